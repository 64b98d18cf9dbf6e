//! When a failed call may be sent again, and how long to wait first: the one
//! rule the client and the forwarding host both follow.
//!
//! The rule follows from `processed` (PROTOCOL.md §7): a call that certainly
//! did not run may always be tried again; one that may have run only when the
//! function is idempotent; one that ran never. Only failures that another
//! attempt can cure are retried: the host (or the link to it) was unavailable
//! or out of capacity. Everything else (bad arguments, a handler error, a
//! trap, the deadline) would fail the same way again.

use std::time::Duration;

use super::{CallError, ErrorCode, Processed};

/// Whether another attempt of a call that failed with `error` is safe and may
/// succeed, for a function that is (or is not) `idempotent`.
pub fn retryable(error: &CallError, idempotent: bool) -> bool {
    let transient = matches!(
        error.code,
        ErrorCode::Unavailable | ErrorCode::ResourceExhausted
    );
    match error.processed {
        Processed::No => transient,
        Processed::Maybe => transient && idempotent,
        Processed::Yes => false,
    }
}

/// Bounds on retrying one call.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (hedged attempts count).
    pub max_attempts: u32,
    /// Wait before the n-th retry (n from 0) of a call that may have run:
    /// `backoff_base` × 2ⁿ, at most `backoff_max`, ± 20% jitter. A call that
    /// certainly did not run is tried on another host at once.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first), with `jitter`
    /// in `[0, 1)` spreading it over ±20%.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponential = self.backoff_base.saturating_mul(1 << retry.min(16));
        exponential
            .min(self.backoff_max)
            .mul_f64(0.8 + jitter.clamp(0.0, 1.0) * 0.4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: ErrorCode, processed: Processed) -> CallError {
        CallError::new(code, processed, "x")
    }

    #[test]
    fn only_transient_failures_are_retried_and_only_when_it_is_safe() {
        use ErrorCode::*;
        use Processed::*;
        for code in [Unavailable, ResourceExhausted] {
            assert!(retryable(&error(code, No), false), "{code} no");
            assert!(!retryable(&error(code, Maybe), false), "{code} maybe");
            assert!(retryable(&error(code, Maybe), true), "{code} maybe idem");
            assert!(!retryable(&error(code, Yes), true), "{code} yes");
        }
        for code in [
            NotFound,
            InvalidArgs,
            HandlerError,
            Trap,
            DeadlineExceeded,
            Cancelled,
            LoopDetected,
            Unauthenticated,
            ProtocolError,
            Internal,
        ] {
            for processed in [No, Maybe, Yes] {
                assert!(!retryable(&error(code, processed), true), "{code}");
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_within_twenty_percent() {
        let policy = RetryPolicy::default();
        let ms = |retry, jitter| policy.backoff(retry, jitter).as_secs_f64() * 1000.0;
        assert!((ms(0, 0.5) - 25.0).abs() < 1e-6);
        assert!((ms(1, 0.5) - 50.0).abs() < 1e-6);
        assert!((ms(2, 0.5) - 100.0).abs() < 1e-6);
        assert!((ms(3, 0.5) - 200.0).abs() < 1e-6);
        assert!((ms(4, 0.5) - 250.0).abs() < 1e-6);
        assert!((ms(40, 0.5) - 250.0).abs() < 1e-6);
        assert!((ms(0, 0.0) - 20.0).abs() < 1e-6);
        assert!((ms(0, 0.999_999) - 30.0).abs() < 1e-3);
        assert!((ms(4, 0.0) - 200.0).abs() < 1e-6);
    }
}
