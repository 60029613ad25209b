//! The engine core in memory: the reference process (start, exclusive gateway, parallel fork of
//! three no-op service tasks, join, end) run to completion, on one thread.

use std::time::Instant;

use flow::memory::{JobOutcome, MemoryInstance};

pub const REFERENCE: &str = include_str!("../../crates/flow/conformance/reference.bpmn");

pub fn run(n: usize) {
    let defs = flow::compile(REFERENCE).expect("reference model");
    let p = defs.main_process();
    let mut vars = serde_json::Map::new();
    vars.insert("amount".into(), 42.into());
    let started = Instant::now();
    let mut completed = 0usize;
    for i in 0..n {
        let mut inst = MemoryInstance::new(p, 1_790_000_000_000 + i as i64).without_history();
        inst.start(vars.clone()).expect("start");
        inst.run_jobs(|_| JobOutcome::Done(Default::default())).expect("jobs");
        completed += (inst.status() == flow::Status::Completed) as usize;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(completed, n);
    let rate = n as f64 / secs;
    println!(
        "flow core in memory, one thread: {n} reference instances in {secs:.2} s = {rate:.0} instances/s (target >= 100000)"
    );
}
