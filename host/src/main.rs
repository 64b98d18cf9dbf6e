/// mimalloc instead of glibc's malloc. A host serving fresh instances makes
/// and drops a wasmtime store per call, and a store is often dropped on
/// another worker thread than the one that made it, where glibc takes the
/// other thread's arena lock. At 64 calls in flight glibc's malloc and free
/// took 13% of the host's CPU; with mimalloc the host served 1.15× the calls
/// per second. `no_thp`: mimalloc otherwise asks for transparent huge pages,
/// which raised the idle host's RSS from 30 to 69 MiB (36 MiB without them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    purge_freed_memory_at_once();
    wasmrpc::cli::main()
}

/// Has mimalloc give memory it no longer uses back to the system as soon as
/// it is freed, rather than a second later, unless the environment sets
/// `MIMALLOC_PURGE_DELAY` (milliseconds; mimalloc reads it at start).
///
/// mimalloc only purges delayed memory when it next allocates, so a host
/// that goes quiet keeps whatever it last freed. Loading a plugin that embeds
/// a language runtime frees tens of MiB (the file's bytes, the work of
/// reading its compiled code): with the default delay, a host serving the
/// Python example plugin kept 35 MiB of freed memory for as long as it had
/// no calls (54 MiB resident instead of 20).
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // mimalloc's C API (`mimalloc.h`); the `mimalloc` crate links it but
    // declares these only under a feature that needs another crate.
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in mimalloc 3's `mi_option_t`.
    const PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: sets a plain integer option; it is called before any other
    // thread exists, as mimalloc asks of option changes.
    unsafe { mi_option_set(PURGE_DELAY, 0) };
}
