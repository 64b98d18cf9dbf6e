//! The `misbehave` plugin: functions that loop, exhaust memory or the stack,
//! trap, or reach for I/O, so that hosts can test their limits.

use std::hint::black_box;
use std::time::{Duration, Instant};

wit_bindgen::generate!({ path: ["../../wit", "wit"], world: "example:misbehave/misbehave" });

const MIB: usize = 1 << 20;
/// The host's page size (wasm pages are 64 KiB, but hosts commit 4 KiB pages).
const PAGE: usize = 4 << 10;

struct Misbehave;

impl Guest for Misbehave {
    fn spin() {
        let mut counter = 0u64;
        loop {
            // `black_box` keeps the optimiser from proving the loop useless.
            counter = black_box(counter.wrapping_add(1));
        }
    }

    fn hog() -> u64 {
        let mut blocks = Vec::new();
        loop {
            let mut block = vec![0u8; MIB];
            // Touch every page so the memory is committed, not just reserved.
            for i in (0..MIB).step_by(PAGE) {
                block[i] = 1;
            }
            blocks.push(black_box(block));
        }
    }

    fn crash(message: String) {
        panic!("{message}");
    }

    #[allow(unconditional_recursion)]
    fn recurse(depth: u64) -> u64 {
        // Adding after the call keeps it from being a tail call, and
        // `black_box` stops the optimiser from rewriting it as a loop.
        black_box(Self::recurse(black_box(depth + 1))) + 1
    }

    fn busy(ms: u32) -> u32 {
        let start = Instant::now();
        let wait = Duration::from_millis(ms.into());
        while start.elapsed() < wait {
            black_box(());
        }
        ms
    }

    fn chatter(message: String) {
        println!("{message}");
        eprintln!("{message}");
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn get_env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn big(len: u32) -> Vec<u8> {
        vec![7; len as usize]
    }

    fn big_text(len: u32) -> String {
        "x".repeat(len as usize)
    }

    fn connect(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(addr.as_str())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

export!(Misbehave);
