//! This host's own load, as it reports it to its peers in `pong`: calls in
//! flight, Wasm instances in use, and the process's CPU use.
//!
//! A caller sees only the calls it sends itself; a host saturated by other
//! callers looks idle to it. So every host keeps these three figures and
//! puts them in each `pong` (protocol version 3), and the hosts that
//! forward to it rank it by them (see `region::peers`). The counts are two
//! atomics bumped by guards the call path already holds ([`Metrics`]
//! hands them out, kept or not); the CPU figure comes from a sampler task
//! ([`sample_cpu`]).
//!
//! [`Metrics`]: super::Metrics

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::protocol::Load;

/// How often [`sample_cpu`] reads the process's CPU time.
pub const CPU_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The span the CPU figure is averaged over: about a second, so that one
/// busy moment does not make a host look saturated, and a saturated host
/// shows within two pings.
pub const CPU_WINDOW: Duration = Duration::from_secs(1);

/// The stored CPU figure when there is none (not measured yet, or no
/// `/proc` to measure it from): a NaN pattern no measurement produces.
const NO_CPU: u64 = u64::MAX;

/// The host-wide load figures, shared by the router, the runtime and the
/// connections.
#[derive(Debug)]
pub struct HostLoad {
    in_flight: AtomicU64,
    instances: AtomicU64,
    instances_max: AtomicU64,
    /// `f64` bits of the CPU use, or [`NO_CPU`].
    cpu: AtomicU64,
}

impl Default for HostLoad {
    fn default() -> Self {
        HostLoad {
            in_flight: AtomicU64::new(0),
            instances: AtomicU64::new(0),
            instances_max: AtomicU64::new(0),
            cpu: AtomicU64::new(NO_CPU),
        }
    }
}

impl HostLoad {
    /// The figures now, as sent in `pong`.
    pub fn report(&self) -> Load {
        let cpu = self.cpu.load(Ordering::Relaxed);
        Load {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            instances: self.instances.load(Ordering::Relaxed),
            instances_max: self.instances_max.load(Ordering::Relaxed),
            cpu: (cpu != NO_CPU).then(|| f64::from_bits(cpu)),
        }
    }

    /// Sets the capacity of the instance pool (`--max-instances`).
    pub fn set_instances_max(&self, max: u64) {
        self.instances_max.store(max, Ordering::Relaxed);
    }

    /// Sets the CPU figure: a fraction of the cores the host may use,
    /// clamped to 0.0-1.0; `None` when it cannot be measured.
    pub fn set_cpu(&self, cpu: Option<f64>) {
        let bits = match cpu {
            Some(cpu) if cpu.is_finite() => cpu.clamp(0.0, 1.0).to_bits(),
            _ => NO_CPU,
        };
        self.cpu.store(bits, Ordering::Relaxed);
    }

    /// Counts a call in flight until the guard is dropped.
    pub fn call(self: &Arc<Self>) -> Counted {
        Counted::start(self.clone(), Figure::InFlight)
    }

    /// Counts an instance in use until the guard is dropped.
    pub fn instance(self: &Arc<Self>) -> Counted {
        Counted::start(self.clone(), Figure::Instances)
    }

    fn figure(&self, figure: Figure) -> &AtomicU64 {
        match figure {
            Figure::InFlight => &self.in_flight,
            Figure::Instances => &self.instances,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Figure {
    InFlight,
    Instances,
}

/// Keeps one call or instance counted in a [`HostLoad`] for as long as it
/// lives, however its owner ends.
#[derive(Debug)]
pub struct Counted {
    load: Arc<HostLoad>,
    figure: Figure,
}

impl Counted {
    fn start(load: Arc<HostLoad>, figure: Figure) -> Counted {
        load.figure(figure).fetch_add(1, Ordering::Relaxed);
        Counted { load, figure }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.load
            .figure(self.figure)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's CPU time so far (user and system, all threads), from
/// `/proc/self/stat`; `None` on a system without it.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat, clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: `sysconf` reads a constant of the system; it has no
    // preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line, in `ticks` per second.
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3 (state) to 13 come before utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = (utime + stime).checked_mul(1_000_000_000)? / ticks.max(1);
    Some(Duration::from_nanos(ticks))
}

/// CPU time readings of the last [`CPU_WINDOW`], turned into a fraction of
/// `cores`.
struct CpuWindow {
    cores: f64,
    samples: VecDeque<(Instant, Duration)>,
}

impl CpuWindow {
    fn new(cores: usize) -> CpuWindow {
        CpuWindow {
            cores: cores.max(1) as f64,
            samples: VecDeque::new(),
        }
    }

    /// Takes in the CPU time `used` read `at`; returns the use over the
    /// readings of the last window (the oldest kept spans at least the
    /// window), or `None` before there are two readings.
    fn add(&mut self, at: Instant, used: Duration) -> Option<f64> {
        self.samples.push_back((at, used));
        // Drop readings while the next one still spans the window.
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= CPU_WINDOW {
            self.samples.pop_front();
        }
        let (first_at, first) = *self.samples.front()?;
        let wall = at.duration_since(first_at).as_secs_f64();
        if self.samples.len() < 2 || wall <= 0.0 {
            return None;
        }
        let cpu = used.saturating_sub(first).as_secs_f64();
        Some((cpu / wall / self.cores).clamp(0.0, 1.0))
    }
}

/// Reads the process's CPU time every [`CPU_SAMPLE_EVERY`] into `load`
/// until `stop`, as a fraction of the cores the process may use (its CPU
/// affinity and cgroup quota, as the standard library counts them). Without
/// `/proc` it leaves `load` without a CPU figure and returns.
pub async fn sample_cpu(load: Arc<HostLoad>, stop: CancellationToken) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut window = CpuWindow::new(cores);
    let mut tick = tokio::time::interval(CPU_SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(used) = process_cpu_time() else {
            tracing::debug!("no /proc/self/stat: this host reports no CPU use to its peers");
            load.set_cpu(None);
            return;
        };
        if let Some(cpu) = window.add(Instant::now(), used) {
            load.set_cpu(Some(cpu));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        // A command name with spaces and parentheses; utime 250, stime 50.
        let stat = "4242 (wasm (rpc) host) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat(stat, 1000), Some(Duration::from_millis(300)));
        assert_eq!(parse_stat("4242 (host) S 1 2", 100), None);
        assert_eq!(parse_stat("no name at all", 100), None);
        // This process: its CPU time grows as it works (in ticks of 10 ms).
        let before = process_cpu_time().expect("this test runs on Linux");
        let spin = Instant::now();
        while process_cpu_time().unwrap() <= before {
            assert!(
                spin.elapsed() < Duration::from_secs(5),
                "no CPU time counted"
            );
            std::hint::spin_loop();
        }
    }

    #[test]
    fn cpu_use_is_averaged_over_the_last_second_as_a_share_of_the_cores() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut window = CpuWindow::new(2);
        assert_eq!(window.add(at(0), Duration::ZERO), None);
        // One core busy for 250 ms: half of two cores.
        assert_eq!(window.add(at(250), Duration::from_millis(250)), Some(0.5));
        // Both cores busy from then on: the figure climbs over the window.
        assert_eq!(window.add(at(500), Duration::from_millis(750)), Some(0.75));
        assert_eq!(
            window.add(at(1000), Duration::from_millis(1750)),
            Some(0.875)
        );
        // The reading at 0 ms leaves the window: 250..1250 ms only.
        assert_eq!(window.add(at(1250), Duration::from_millis(2250)), Some(1.0));
        assert_eq!(window.samples.len(), 4);
        // Idle again: the figure falls back within the window.
        let idle = window.add(at(2250), Duration::from_millis(2250));
        assert_eq!(idle, Some(0.0));
        // A CPU time over the cores (rounding of the kernel's ticks) reads 1.0.
        let mut window = CpuWindow::new(1);
        window.add(at(0), Duration::ZERO);
        assert_eq!(window.add(at(100), Duration::from_millis(110)), Some(1.0));
    }

    #[test]
    fn calls_and_instances_are_counted_while_their_guards_live() {
        let load = Arc::new(HostLoad::default());
        load.set_instances_max(256);
        let report = |in_flight, instances, cpu| Load {
            in_flight,
            instances,
            instances_max: 256,
            cpu,
        };
        assert_eq!(load.report(), report(0, 0, None));
        let calls = [load.call(), load.call()];
        let instance = load.instance();
        load.set_cpu(Some(0.25));
        assert_eq!(load.report(), report(2, 1, Some(0.25)));
        drop(calls);
        drop(instance);
        load.set_cpu(Some(1.5));
        assert_eq!(load.report(), report(0, 0, Some(1.0)));
        load.set_cpu(Some(f64::NAN));
        assert_eq!(load.report(), report(0, 0, None));
    }
}
