//! The `ledger` plugin: logs every execution through the host, so tests and
//! operators can see where and how often a call ran.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wasmrpc::host::host::{log, region};
use wasmrpc::host::types::Level;

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:ledger/ledger",
    generate_all,
});

struct Ledger;

impl Guest for Ledger {
    fn record(entry: String, work_ms: u32) -> String {
        work(work_ms);
        let region = region();
        log(Level::Info, &format!("recorded {entry} in {region}"));
        region
    }

    fn tally() -> u32 {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        CALLS.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn locate(entry: String, work_ms: u32) -> String {
        work(work_ms);
        let region = region();
        log(Level::Info, &format!("located {entry} in {region}"));
        region
    }
}

/// Busy for `ms` milliseconds, like a handler doing real work.
fn work(ms: u32) {
    let until = Instant::now() + Duration::from_millis(ms.into());
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

export!(Ledger);
