//! The load generator: one driver for every system under test.
//!
//! A system is an async `call` closure taking the caller's lane (`0..in_flight`;
//! most systems ignore it, the 64-connection floor uses it to pick its
//! connection) and resolving to `Ok(())` once the call returned the expected
//! answer. The driver runs it under a [`Load`] and records each call's latency
//! in an HDR histogram with nanosecond resolution.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// How one measurement drives a system.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `in_flight` callers (lanes), each making its next call as soon as its
    /// previous one returned, until `calls` calls have completed.
    Closed { calls: u64, in_flight: usize },
    /// A call started every `1 / rate` seconds for `duration`, whether or not
    /// earlier calls have returned.
    Open { rate: u32, duration: Duration },
}

/// The outcome of one measurement.
pub struct Measurement {
    /// Per-call latency, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Calls completed.
    pub calls: u64,
    /// From the first call's start to the last call's end.
    pub elapsed: Duration,
}

impl Measurement {
    /// Adds `other`'s calls, latencies and time to these.
    pub fn merge(&mut self, other: Measurement) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        self.calls += other.calls;
        self.elapsed += other.elapsed;
    }

    /// Completed calls per second of wall time.
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0.5 for the median), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1_000.0
    }
}

/// Runs `call` under `load`. Stops at the first failed call and returns its error.
pub async fn run<F, Fut>(call: &F, load: Load) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    match load {
        Load::Closed { calls, in_flight } => closed(call.clone(), calls, in_flight).await,
        Load::Open { rate, duration } => open(call.clone(), rate, duration).await,
    }
}

/// An empty histogram for latencies from 1 ns to 1 minute, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `in_flight` tasks share a counter of calls still to make.
async fn closed<F, Fut>(call: F, calls: u64, in_flight: usize) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let call = Arc::new(call);
    let taken = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let lanes: Vec<_> = (0..in_flight.max(1))
        .map(|lane| {
            let call = call.clone();
            let taken = taken.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                while taken.fetch_add(1, Ordering::Relaxed) < calls {
                    let began = Instant::now();
                    if let Err(error) = call(lane).await {
                        // Stop the other lanes too.
                        taken.store(calls, Ordering::Relaxed);
                        return Err(error);
                    }
                    latency.saturating_record(nanos(began.elapsed()));
                }
                Ok(latency)
            })
        })
        .collect();
    let mut latency = histogram();
    for lane in lanes {
        latency.add(lane.await.context("a load task panicked")??)?;
    }
    Ok(Measurement {
        calls: latency.len(),
        latency,
        elapsed: start.elapsed(),
    })
}

/// A pacing thread starts each call as a task at its scheduled instant.
///
/// `std::thread::sleep` keeps the schedule to within tens of microseconds,
/// where tokio's timer would release calls in bursts once per millisecond.
/// Each call's latency is measured from when its task starts to when it
/// returns; if a system falls behind the rate, its achieved calls/s shows it.
async fn open<F, Fut>(call: F, rate: u32, duration: Duration) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let runtime = tokio::runtime::Handle::current();
    let call = Arc::new(call);
    let (start, tasks) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let tasks: Vec<_> = (0..total)
            .map(|i| {
                let due = start + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let call = call.clone();
                runtime.spawn(async move {
                    let began = Instant::now();
                    call(0).await?;
                    let ended = Instant::now();
                    anyhow::Ok((ended - began, ended))
                })
            })
            .collect();
        (start, tasks)
    })
    .await
    .context("the pacing thread panicked")?;

    let mut latency = histogram();
    let mut last = start;
    for task in tasks {
        let (took, ended) = task.await.context("a call task panicked")??;
        latency.saturating_record(nanos(took));
        last = last.max(ended);
    }
    Ok(Measurement {
        calls: latency.len(),
        latency,
        elapsed: last - start,
    })
}
