//! The platform through its HTTP API, on every configured backend: the real router on port 0,
//! the demo city as data, a fake clock for timeouts.

mod audit_trail;
mod conformance;
mod crash;
mod grid;
mod helpers;
mod identity_flows;
mod messaging;
mod permissions;
mod platforms;
mod robustness;
mod workflow;
