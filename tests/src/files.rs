//! Plugin files for reload tests: small components built from WAT, and the
//! ways editors and deploy tools write files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// A component exporting `version: func() -> u32` that returns `n`.
pub fn component_returning(n: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "version") (result i32) i32.const {n}))
            (core instance $i (instantiate $m))
            (func (export "version") (result u32) (canon lift (core func $i "version"))))"#
    ))
    .expect("valid component text")
}

/// A component exporting `ping: func() -> u32` (returning 7) whose core
/// module has `functions` large functions, so that compiling it takes a while.
pub fn large_component(functions: usize) -> Vec<u8> {
    let mut module = String::new();
    for f in 0..functions {
        write!(module, "(func $f{f} (param i32) (result i32) local.get 0").unwrap();
        for k in 0..200 {
            write!(module, " i32.const {k} i32.add i32.const 3 i32.mul").unwrap();
        }
        module.push_str(")\n");
    }
    wat::parse_str(format!(
        r#"(component
            (core module $m {module} (func (export "ping") (result i32) i32.const 7))
            (core instance $i (instantiate $m))
            (func (export "ping") (result u32) (canon lift (core func $i "ping"))))"#
    ))
    .expect("valid component text")
}

/// How a file gets written.
#[derive(Debug, Clone, Copy)]
pub enum WriteStyle {
    /// Truncate and write in place (editors that save in place, `cp`).
    InPlace,
    /// Write a temporary file and rename it over the target (atomic deploys).
    Rename,
    /// One open handle, the content in small chunks with pauses (slow copies).
    SlowChunks { chunks: usize, pause: Duration },
}

impl WriteStyle {
    pub fn to(self, path: &Path, bytes: &[u8]) {
        match self {
            WriteStyle::InPlace => std::fs::write(path, bytes).expect("write in place"),
            WriteStyle::Rename => {
                let tmp = path.with_extension("wasm.part");
                std::fs::write(&tmp, bytes).expect("write temporary file");
                std::fs::rename(&tmp, path).expect("rename into place");
            }
            WriteStyle::SlowChunks { chunks, pause } => {
                let mut file = std::fs::File::create(path).expect("create");
                let size = bytes.len().div_ceil(chunks);
                for chunk in bytes.chunks(size.max(1)) {
                    file.write_all(chunk).expect("write chunk");
                    file.flush().expect("flush");
                    // The pause is the scenario: a copy that takes its time.
                    std::thread::sleep(pause);
                }
            }
        }
    }
}
