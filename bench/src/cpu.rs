//! CPU time spent by processes, to the nanosecond.
//!
//! Read from the scheduler's accounting of each live thread
//! (`/proc/<pid>/task/<tid>/schedstat`, first field: nanoseconds on a CPU),
//! so that one round of a few thousand calls is measured exactly, where
//! `/proc/<pid>/stat` counts in 10 ms ticks. A thread that exits between two
//! readings takes its time with it; the servers measured here keep their
//! threads while they serve.

use std::time::Duration;

/// CPU time of every live thread of process `pid`; `None` when the process
/// or the kernel's accounting cannot be read.
pub fn process_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks {
        let path = task.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: it no longer counts.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += on_cpu_ns(&text)?;
        }
    }
    Some(Duration::from_nanos(total))
}

/// CPU time of this process: the load generator and clients.
pub fn own_time() -> Option<Duration> {
    process_time(std::process::id())
}

/// The first field of a `schedstat` line: nanoseconds spent on a CPU.
fn on_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// CPU time used by some server processes and by this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Summed over the servers; `None` if one could not be read, or none
    /// was given.
    pub servers: Option<Duration>,
    /// This process (the load generator and the client).
    pub client: Option<Duration>,
}

impl Usage {
    /// The CPU time used so far by `servers` and by this process.
    pub fn now(servers: &[u32]) -> Usage {
        let servers = if servers.is_empty() {
            None
        } else {
            servers.iter().map(|&pid| process_time(pid)).sum()
        };
        Usage {
            servers,
            client: own_time(),
        }
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Usage {
            servers: diff(self.servers, earlier.servers),
            client: diff(self.client, earlier.client),
        }
    }

    /// Adds `other`'s times to these.
    pub fn add(&mut self, other: Usage) {
        let sum = |a: Option<Duration>, b: Option<Duration>| Some(a? + b?);
        self.servers = sum(self.servers, other.servers);
        self.client = sum(self.client, other.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn reads_the_time_on_cpu_from_a_schedstat_line() {
        assert_eq!(
            on_cpu_ns("5674012983 74126629 280762\n"),
            Some(5_674_012_983)
        );
        assert_eq!(on_cpu_ns(""), None);
        assert_eq!(on_cpu_ns("x 1 2"), None);
    }

    #[test]
    fn time_spent_on_a_cpu_counts_and_time_asleep_does_not() {
        let spin = |for_: Duration| {
            let began = Instant::now();
            while began.elapsed() < for_ {
                std::hint::spin_loop();
            }
        };
        let before = Usage::now(&[]);
        spin(Duration::from_millis(200));
        let used = Usage::now(&[]).since(before).client.unwrap();
        // Spinning 200 ms of wall time, on a machine shared with other work.
        assert!(used >= Duration::from_millis(100), "{used:?}");

        let before = Usage::now(&[]);
        std::thread::sleep(Duration::from_millis(200));
        let idle = Usage::now(&[]).since(before).client.unwrap();
        assert!(idle < Duration::from_millis(50), "{idle:?}");
    }

    #[test]
    fn a_server_that_cannot_be_read_makes_the_servers_unknown() {
        let usage = Usage::now(&[std::process::id(), u32::MAX]);
        assert_eq!(usage.servers, None);
        assert_eq!(Usage::now(&[]).servers, None);
        assert!(usage.client.is_some());
        let mut total = Usage::now(&[std::process::id()]);
        assert!(total.servers.is_some());
        total.add(usage);
        assert_eq!(total.servers, None);
    }
}
