//! Per-subject token bucket, counted in events so a batch of 100 costs 100.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A keyed rate limiter; `None` inside means limits are off.
#[derive(Clone)]
pub struct SubjectLimiter(Option<Arc<DefaultKeyedRateLimiter<String>>>);

impl SubjectLimiter {
    /// `events_per_second` per subject with bursts of `burst_events`; 0 turns it off.
    pub fn new(events_per_second: u32, burst_events: u32) -> Self {
        let limiter = NonZeroU32::new(events_per_second).map(|rate| {
            let burst = NonZeroU32::new(burst_events).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self(limiter)
    }

    /// Takes `events` tokens from `subject`'s bucket, or says how many whole
    /// seconds to wait before retrying.
    pub fn check(&self, subject: &str, events: usize) -> Result<(), u64> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        let n =
            NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&subject.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            // More events than the burst: config guarantees a full batch fits,
            // so only a misconfiguration gets here; ask to wait a second.
            Err(_insufficient) => Err(1),
        }
    }

    /// Forgets subjects whose buckets are full again, bounding memory.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_burst_and_keys_are_separate() {
        let limiter = SubjectLimiter::new(10, 20);
        assert_eq!(limiter.check("a", 20), Ok(()));
        assert!(limiter.check("a", 1).is_err());
        assert_eq!(limiter.check("b", 5), Ok(()));
        assert_eq!(SubjectLimiter::new(0, 0).check("a", 1_000_000), Ok(()));
    }
}
