//! The context a call carries from its first caller to the guest that runs
//! it, and on to the calls that guest makes or the hosts that forward it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Everything a call carries besides its function and arguments.
///
/// The deadline is absolute from the moment a call is received (or made)
/// until it is sent again: only the wire carries it as the milliseconds
/// left ([`CallContext::deadline_ms`]), so no hop can stretch it.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Forwards and nested calls between the first caller and this call.
    pub hops: u32,
    /// Regions the call has been forwarded from, in order.
    pub visited: Vec<String>,
    /// The caller's metadata, passed along unchanged.
    pub metadata: BTreeMap<String, String>,
    /// Fires when the caller cancels or goes away.
    pub cancel: CancellationToken,
    /// The name of the authenticated caller (its token's), carried to the
    /// hosts a call is forwarded to, for their logs. Only hosts set it.
    pub principal: Option<std::sync::Arc<str>>,
}

impl CallContext {
    /// A fresh call: no hops, nothing visited, `timeout` from now.
    pub fn new(timeout: Duration) -> Self {
        CallContext {
            deadline: Instant::now() + timeout,
            hops: 0,
            visited: Vec::new(),
            metadata: BTreeMap::new(),
            cancel: CancellationToken::new(),
            principal: None,
        }
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The deadline as the wire carries it: the milliseconds left, rounded
    /// up so that a deadline never shrinks by a millisecond per hop.
    pub fn deadline_ms(&self) -> u64 {
        u64::try_from(self.remaining().as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// The context of a call this call makes: same deadline and metadata,
    /// one more hop (so a handler calling itself stops at the hop limit),
    /// cancelled with this one.
    pub fn nested(&self) -> CallContext {
        CallContext {
            deadline: self.deadline,
            hops: self.hops + 1,
            visited: self.visited.clone(),
            metadata: self.metadata.clone(),
            cancel: self.cancel.child_token(),
            principal: self.principal.clone(),
        }
    }

    /// The context of this call forwarded by a host of `region`: one more
    /// hop, `region` added to the visited ones (once), cancelled with this
    /// one.
    pub fn forwarded(&self, region: &str) -> CallContext {
        let mut next = self.nested();
        if next.visited.last().map(String::as_str) != Some(region) {
            next.visited.push(region.to_owned());
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wire_deadline_rounds_up_and_never_goes_below_zero() {
        let context = CallContext::new(Duration::from_micros(2_500_100));
        assert_eq!(context.deadline_ms(), 2_501);
        tokio::time::advance(Duration::from_micros(2_500_099)).await;
        assert_eq!(context.deadline_ms(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(context.deadline_ms(), 0);
        assert_eq!(context.remaining(), Duration::ZERO);
    }

    #[test]
    fn a_forwarded_call_has_one_more_hop_and_its_region_visited_once() {
        let mut first = CallContext::new(Duration::from_secs(1));
        first.metadata.insert("tenant".into(), "t-1".into());
        let there = first.forwarded("eu-west");
        assert_eq!(
            (there.hops, there.visited.as_slice()),
            (1, &["eu-west".to_owned()][..])
        );
        assert_eq!(there.deadline, first.deadline);
        assert_eq!(there.metadata, first.metadata);
        // Forwarded again within the same region: visited once.
        let again = there.forwarded("eu-west");
        assert_eq!((again.hops, again.visited.len()), (2, 1));
        let nested = again.nested();
        assert_eq!((nested.hops, nested.visited.len()), (3, 1));
        first.cancel.cancel();
        assert!(nested.cancel.is_cancelled(), "cancelled with its caller");
    }
}
