//! The inline fast path: a call's guest first runs on the thread that asked
//! for it, and moves to the guest pool only if it is still running after a
//! short budget (1 ms by default).
//!
//! Handing a call to the guest pool and its answer back costs two thread
//! wake-ups, several times what a short handler needs to run. So
//! [`Runtime::call`](super::Runtime::call) polls the call once in place. The
//! epoch ticker watches such inline runs ([`Watch`]) and bumps the epoch as
//! soon as one outlasts the budget; the store's epoch callback then yields
//! ([`preempt`]), the poll returns, and the call continues on the guest pool.
//! So a guest holds a network thread for at most the budget plus one ticker
//! step, and a function that outlasted the budget is served from the pool
//! for a while (see `call::PoolMark`). The budget is wall time; a
//! short call whose thread the OS set aside (both CPUs busy) passes it too,
//! so the move is judged again by the CPU time the call still needed on the
//! pool ([`CpuTimed`]): under the budget, the function's calls stay inline.

use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Inline runs that can be watched at once; more run on the guest pool.
const SLOTS: usize = 64;

/// When each inline run in progress started, for the epoch ticker.
///
/// The ticker checks the runs every budget while calls come in, ticks every
/// epoch tick while guests run on the guest pool, and sleeps while no guest
/// runs anywhere (an idle host does not wake); the first run after such a
/// sleep wakes it.
pub(crate) struct Watch {
    origin: Instant,
    /// Microseconds since `origin` plus one at which the run started; 0 = free.
    slots: [AtomicU64; SLOTS],
    /// Inline runs started so far.
    started: AtomicU64,
    /// Guests running (or waiting) on the guest pool.
    pool_runs: AtomicUsize,
    /// Set while the ticker sleeps until woken.
    sleeping: AtomicBool,
    ticker: OnceLock<std::thread::Thread>,
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            origin: Instant::now(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            started: AtomicU64::new(0),
            pool_runs: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            ticker: OnceLock::new(),
        }
    }

    /// The thread to wake when an inline run starts while it sleeps.
    pub fn set_ticker(&self, ticker: std::thread::Thread) {
        let _ = self.ticker.set(ticker);
    }

    /// Inline runs started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether guests run on the guest pool (they need the epoch ticks).
    pub fn pool_running(&self) -> bool {
        self.pool_runs.load(Ordering::SeqCst) > 0
    }

    /// For the ticker, before sleeping until woken: false (and no such
    /// sleep) when a guest runs. Otherwise the next guest to start, inline
    /// or on the pool, wakes the ticker.
    pub fn may_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.pool_running()
            || self
                .slots
                .iter()
                .any(|slot| slot.load(Ordering::SeqCst) != 0)
        {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Counts a guest running on the guest pool until the guard is dropped.
    pub fn pool_run(self: &Arc<Self>) -> PoolRun {
        self.pool_runs.fetch_add(1, Ordering::SeqCst);
        self.wake_ticker();
        PoolRun(self.clone())
    }

    fn wake_ticker(&self) {
        if self.sleeping.load(Ordering::SeqCst)
            && self.sleeping.swap(false, Ordering::SeqCst)
            && let Some(ticker) = self.ticker.get()
        {
            ticker.unpark();
        }
    }

    /// Whether the ticker sleeps until woken.
    #[cfg(test)]
    pub fn ticker_sleeps(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// For the ticker, after any sleep.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether an inline run started `budget` or longer before `now`.
    pub fn overdue(&self, now: Instant, budget: Duration) -> bool {
        let Some(limit) = now
            .checked_sub(budget)
            .filter(|limit| *limit >= self.origin)
        else {
            return false;
        };
        let limit = self.stamp(limit);
        self.slots.iter().any(|slot| {
            let started = slot.load(Ordering::Relaxed);
            started != 0 && started <= limit
        })
    }

    fn claim(&self, started: Instant) -> Option<usize> {
        let stamp = self.stamp(started);
        let slot = self.slots.iter().position(|slot| {
            slot.compare_exchange(0, stamp, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        self.wake_ticker();
        Some(slot)
    }

    fn release(&self, slot: usize) {
        self.slots[slot].store(0, Ordering::Relaxed);
    }
}

/// A guest running on the guest pool (see [`Watch::pool_run`]).
pub(crate) struct PoolRun(Arc<Watch>);

impl Drop for PoolRun {
    fn drop(&mut self) {
        self.0.pool_runs.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    /// Set on the guest pool's threads.
    static GUEST_THREAD: Cell<bool> = const { Cell::new(false) };
    /// The inline run in progress on this thread: when it started.
    static RUNNING: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when the epoch callback preempted this thread's inline run.
    static PREEMPTED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a guest pool thread.
pub(crate) fn mark_guest_thread() {
    GUEST_THREAD.with(|g| g.set(true));
}

/// Whether a call started here should simply run here: on a guest pool
/// thread (already off the network), or inside a call running inline (a
/// nested call belongs to its caller's run, and moves with it).
pub(crate) fn run_in_place() -> bool {
    GUEST_THREAD.with(Cell::get) || RUNNING.with(Cell::get).is_some()
}

/// For the epoch callback: when the inline run on this thread started, if
/// the guest is running inline.
pub(crate) fn running_since() -> Option<Instant> {
    RUNNING.with(Cell::get)
}

/// For the epoch callback: the inline run outlasted its budget. Returns the
/// future to yield on; the poll in [`poll_inline`] then returns `Pending`
/// and the call moves to the guest pool.
pub(crate) fn preempt() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    PREEMPTED.with(|p| p.set(true));
    Box::pin(YieldOnce(false))
}

/// How one inline poll went.
pub(crate) enum Inline<T> {
    /// The call finished.
    Done(T),
    /// The call is not finished: it outlasted the budget (`preempted`) or
    /// awaits something (a forwarded nested call).
    Pending { preempted: bool },
    /// No watch slot was free; the call has not started.
    NotStarted,
    /// The host panicked while polling; the call is lost (its future must
    /// not be polled again).
    Panicked,
}

/// Polls `future` once on this thread as an inline run watched by `watch`.
pub(crate) async fn poll_inline<F: Future + Unpin>(
    watch: &Watch,
    future: &mut F,
) -> Inline<F::Output> {
    let started = Instant::now();
    let Some(slot) = watch.claim(started) else {
        return Inline::NotStarted;
    };
    // Cleared on every way out, a panicking guest included.
    struct Leave<'a>(&'a Watch, usize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            RUNNING.with(|r| r.set(None));
            self.0.release(self.1);
        }
    }
    let leave = Leave(watch, slot);
    RUNNING.with(|r| r.set(Some(started)));
    PREEMPTED.with(|p| p.set(false));
    // A panic must not unwind into the caller (a connection's task): it
    // ends this call only, as it would on the guest pool.
    let poll = std::future::poll_fn(|cx| {
        Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
            Pin::new(&mut *future).poll(cx)
        })))
    })
    .await;
    drop(leave);
    match poll {
        Ok(Poll::Ready(output)) => Inline::Done(output),
        Ok(Poll::Pending) => Inline::Pending {
            preempted: PREEMPTED.with(|p| p.replace(false)),
        },
        Err(_) => Inline::Panicked,
    }
}

/// CPU time the calling thread has used so far.
///
/// A system call (about 1 µs here), unlike the wall clock: used only for calls
/// that left the inline path.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a
    // constant every Linux supports.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// A future that counts the CPU time its polls take, whichever thread runs
/// them: how much work a call really did, apart from the time its thread
/// waited for a CPU.
pub(crate) struct CpuTimed<F> {
    future: F,
    used: Duration,
}

impl<F> CpuTimed<F> {
    pub fn new(future: F) -> CpuTimed<F> {
        CpuTimed {
            future,
            used: Duration::ZERO,
        }
    }

    /// CPU time taken by the polls so far.
    pub fn used(&self) -> Duration {
        self.used
    }
}

impl<F: Future + Unpin> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let began = thread_cpu_time();
        let poll = Pin::new(&mut self.future).poll(cx);
        self.used += thread_cpu_time().saturating_sub(began);
        poll
    }
}

/// Pending once, without asking to be woken: whoever polled it moves the
/// call to the guest pool, which polls it again at once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_overdue_only_after_its_budget() {
        let watch = Watch::new();
        let start = Instant::now();
        let slot = watch.claim(start).unwrap();
        let budget = Duration::from_millis(1);
        assert!(!watch.overdue(start, budget));
        assert!(watch.overdue(start + Duration::from_millis(2), budget));
        watch.release(slot);
        assert!(!watch.overdue(start + Duration::from_millis(2), budget));
    }

    /// Polls `future` to completion on this thread.
    fn finish<F: Future + Unpin>(future: &mut F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = Pin::new(&mut *future).poll(&mut cx) {
                return output;
            }
        }
    }

    #[test]
    fn cpu_timed_counts_work_and_not_waiting() {
        // Waiting for 50 ms (as a thread does when the OS runs another one)
        // takes next to no CPU time.
        let mut waits = CpuTimed::new(std::future::poll_fn(|_| {
            std::thread::sleep(Duration::from_millis(50));
            Poll::Ready(7)
        }));
        assert_eq!(finish(&mut waits), 7);
        assert!(
            waits.used() < Duration::from_millis(10),
            "{:?}",
            waits.used()
        );

        // Computing for 30 ms over three polls takes 30 ms of CPU time.
        let mut polls = 0;
        let mut works = CpuTimed::new(std::future::poll_fn(|_| {
            let began = thread_cpu_time();
            while thread_cpu_time() - began < Duration::from_millis(10) {
                std::hint::black_box(());
            }
            polls += 1;
            if polls == 3 {
                Poll::Ready(polls)
            } else {
                Poll::Pending
            }
        }));
        assert_eq!(finish(&mut works), 3);
        assert!(
            works.used() >= Duration::from_millis(30),
            "{:?}",
            works.used()
        );
        assert!(
            works.used() < Duration::from_millis(60),
            "{:?}",
            works.used()
        );
    }

    #[test]
    fn every_slot_can_be_claimed_once() {
        let watch = Watch::new();
        let now = Instant::now();
        let slots: Vec<usize> = (0..SLOTS).map(|_| watch.claim(now).unwrap()).collect();
        assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>());
        assert_eq!(watch.claim(now), None);
        watch.release(7);
        assert_eq!(watch.claim(now), Some(7));
    }
}
