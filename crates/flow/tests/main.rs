//! The flow crate's integration tests: one binary, modules by subject.

mod conformance;
mod models;
