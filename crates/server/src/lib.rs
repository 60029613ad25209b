//! The `zhongshu` binary's library: configuration, wiring of all capability crates into one
//! HTTP application, the embedded web UI, the demo city and the command-line tools. `main`
//! and the integration tests use the same [`app::router`].

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod demo_flow;
pub mod demo_grid;
pub mod demo_photos;
pub mod tls;
pub mod web;
