//! The guest thread pool, and where a guest's run goes: in place, inline within the budget, or onto the pool.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::inline::{self, Inline, Watch};

/// The threads that run guests once they leave the inline path. Dropping it
/// lets the threads go without waiting for the guests still on them.
pub(super) struct GuestPool(Option<tokio::runtime::Runtime>);

impl GuestPool {
    /// A pool of `threads` threads (at least one).
    ///
    /// # Errors
    ///
    /// When its threads cannot be started.
    pub fn new(threads: usize) -> std::io::Result<GuestPool> {
        // Each poll of a spinning guest lasts one epoch tick, so the pool must
        // look for new calls (spawned from the network runtime onto its
        // global queue) and timers often, not every 61 polls (tokio's
        // default), or a new call waits behind every spinner ~61 times.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("wasm-guest")
            .global_queue_interval(2)
            .event_interval(2)
            .on_thread_start(inline::mark_guest_thread)
            .enable_all()
            .build()?;
        Ok(GuestPool(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the pool is only taken when dropped")
            .handle()
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where guest runs go: the one place that decides between the thread that
/// asked for a run and the guest pool (see the `inline` module for why).
pub(crate) struct Guests {
    /// The inline runs and the guests on the pool, for the epoch ticker.
    pub watch: Arc<Watch>,
    pool: tokio::runtime::Handle,
}

/// Where [`Guests::place`] put a run.
pub(crate) enum Placed<F: Future> {
    /// It belongs to a run already under way here (on a guest pool thread,
    /// or nested in a call running inline): await it in place.
    InPlace(F),
    /// It finished on this thread.
    Done(F::Output),
    /// The host panicked while polling it; it is lost.
    Panicked,
    /// It goes on with [`Guests::spawn`]; `preempted` when it outlasted the
    /// inline budget (rather than awaiting something or never starting).
    Pool { run: F, preempted: bool },
}

impl Guests {
    pub fn new(pool: tokio::runtime::Handle) -> Guests {
        Guests {
            watch: Arc::new(Watch::new()),
            pool,
        }
    }

    /// Starts `run`: in place when it belongs to a run under way here; else,
    /// with `inline`, polled once on this thread until it finishes, awaits
    /// something or outlasts the inline budget (the epoch callback checks the
    /// run's deadline meanwhile). What is left is for the caller to hand to
    /// [`Guests::spawn`], after wrapping it if it must.
    pub async fn place<F: Future + Unpin>(&self, mut run: F, inline: bool) -> Placed<F> {
        if inline::run_in_place() {
            return Placed::InPlace(run);
        }
        if inline {
            match inline::poll_inline(&self.watch, &mut run).await {
                Inline::Done(output) => return Placed::Done(output),
                Inline::Panicked => return Placed::Panicked,
                Inline::Pending { preempted } => return Placed::Pool { run, preempted },
                Inline::NotStarted => {}
            }
        }
        Placed::Pool {
            run,
            preempted: false,
        }
    }

    /// Runs `run` on the guest pool; epoch ticks go on while it is there.
    pub fn spawn<F>(&self, run: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let running = self.watch.pool_run();
        self.pool.spawn(async move {
            let _running = running;
            run.await
        })
    }
}
