//! Retry with capped exponential backoff, shared by the supervisor and sinks.
//!
//! ```
//! use audit_core::retry::RetryPolicy;
//! use std::time::Duration;
//! let policy = RetryPolicy { initial: Duration::from_millis(10), max: Duration::from_millis(40), ..RetryPolicy::default() };
//! let delays: Vec<_> = (0..4).map(|attempt| policy.delay(attempt)).collect();
//! assert_eq!(delays, [10, 20, 40, 40].map(Duration::from_millis));
//! ```

use std::time::Duration;

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Attempts after the first, at most (e.g. conflicts re-sealed by a sink).
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(2),
            max_retries: 8,
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based): `initial * 2^attempt`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}
