//! `zs-bench <what> [N]`: Zhongshu's benchmarks (see bench/README.md). Run in release mode via
//! `bench/run`.
//!
//! - `audit [N]`: audit append, sealing and verification.
//! - `flow-core [N]`: the engine core in memory on the reference process.
//! - `flow-durable [N]`: the same process durable, through the service layer.
//! - `flow-timers [N]`: N pending timers due evenly over one second, fired by the timer worker.
//! - `grid-intake [N] [CLIENTS]`: events through the intake service on SQLite, with the case process started.
//! - `grid-outbox [N] [OUTAGE_SECS]`: N dispatches to the platform simulator through the outbox, after an outage.
//! - `grid-lookup [N] [FILE]`: point → grid lookups on 5,000 polygons (FILE: input for the shapely peer).
//! - `grid-http URL`: event intake over HTTP (throughput with 64 clients; latency at 1,000 events/s).
//! - `flow-http URL [CLIENTS]`: user-task cycles (start, find, complete) through the HTTP API of a running server.

mod audit;
mod flow_core;
mod flow_durable;
mod flow_http;
mod grid_http;
mod grid_intake;
mod grid_lookup;
mod grid_outbox;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `ZS_BENCH_LOG=sqlx::query=debug` logs every statement with its duration.
    if let Ok(level) = std::env::var("ZS_BENCH_LOG") {
        let mut cfg = zhongshu::config::Config::defaults();
        cfg.log.level = level;
        zhongshu::cli::init_logging(&cfg);
    }
    let n = |default: usize| args.get(2).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("audit") => audit::run(n(200_000)).await,
        Some("flow-core") => flow_core::run(n(1_000_000)),
        Some("flow-durable") => flow_durable::run(n(50_000)).await,
        Some("flow-timers") => flow_durable::timers(n(100_000)).await,
        Some("grid-intake") => {
            grid_intake::run(n(20_000), args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64)).await
        }
        Some("grid-outbox") => {
            grid_outbox::run(n(100_000), args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3)).await
        }
        Some("grid-lookup") => grid_lookup::run(n(5_000_000), args.get(3).map(String::as_str)),
        Some("grid-http") => grid_http::run(args.get(2).map(String::as_str).unwrap_or("http://127.0.0.1:8080")).await,
        Some("flow-http") => {
            let clients = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(16);
            flow_http::run(args.get(2).map(String::as_str).unwrap_or("http://127.0.0.1:8080"), 10, clients).await
        }
        _ => eprintln!(
            "usage: zs-bench audit|flow-core|flow-durable|flow-timers|grid-intake|grid-outbox|grid-lookup [N] | flow-http URL [CLIENTS] | grid-http URL"
        ),
    }
}
