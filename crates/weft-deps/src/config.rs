//! The engine's configuration, validated once at construction.

use crate::Error;
use std::sync::Arc;
use std::time::Duration;

/// Decides whether an error stops the whole engine.
pub(crate) type IsFatal = Arc<dyn Fn(&Error) -> bool + Send + Sync>;
/// Picks the worse of two fatal errors.
pub(crate) type WorstError = Arc<dyn Fn(Error, Error) -> Error + Send + Sync>;
/// Rewrites an error (the engine's, or a manifold's).
pub(crate) type Filter = Arc<dyn Fn(Error) -> Error + Send + Sync>;

/// How an engine behaves. Juju's agents use: error delay 3 s, bounce delay 10 ms, backoff factor
/// 1.2, backoff reset 1 min, max delay 2 min ([`EngineConfig::juju`]).
#[derive(Clone)]
pub struct EngineConfig {
    /// Whether an error stops the engine (required).
    pub is_fatal: Option<IsFatal>,
    /// The worse of two fatal errors (required).
    pub worst_error: Option<WorstError>,
    /// Applied to the error [`crate::DependencyEngine::wait`] returns.
    pub filter: Option<Filter>,
    /// Delay before restarting a worker after an unknown error.
    pub error_delay: Duration,
    /// Delay before restarting a worker after a bounce.
    pub bounce_delay: Duration,
    /// Each recent failure multiplies the restart delay by this (0 disables; else ≥ 1).
    pub backoff_factor: f64,
    /// A worker that ran longer than this before failing has its failure count reset.
    pub backoff_reset_time: Duration,
    /// The longest restart delay.
    pub max_delay: Duration,
}

impl EngineConfig {
    /// Juju's agent settings, with every error fatal-checked by `is_fatal` and the first fatal
    /// error kept as the worst.
    pub fn juju(is_fatal: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        EngineConfig {
            is_fatal: Some(Arc::new(is_fatal)),
            worst_error: Some(Arc::new(|first, _| first)),
            filter: None,
            error_delay: Duration::from_secs(3),
            bounce_delay: Duration::from_millis(10),
            backoff_factor: 1.2,
            backoff_reset_time: Duration::from_secs(60),
            max_delay: Duration::from_secs(120),
        }
    }

    /// Checks the configuration, as Juju's `EngineConfig.Validate` does.
    pub fn validate(&self) -> Result<(), String> {
        if self.is_fatal.is_none() {
            return Err("IsFatal not specified".into());
        }
        if self.worst_error.is_none() {
            return Err("WorstError not specified".into());
        }
        if self.backoff_factor != 0.0 && (self.backoff_factor < 1.0 || self.backoff_factor.is_nan())
        {
            // Juju's words; 0 (no growth) is allowed besides.
            return Err(format!(
                "BackoffFactor {} must be >= 1",
                self.backoff_factor
            ));
        }
        Ok(())
    }

    /// The delay before a restart requested with `delay`, after `recent_errors` failures:
    /// `delay × factor^(recent_errors − 1)`, capped at `max_delay`, then spread ±10 % by
    /// `jitter` in `[0, 1)` and rounded to the millisecond. Unlike Juju, no failures means no
    /// growth (Juju's exponent of −1 shrinks the delay).
    pub(crate) fn delay(&self, delay: Duration, recent_errors: u32, jitter: f64) -> Duration {
        if delay.is_zero() {
            return delay;
        }
        let mut secs = delay.as_secs_f64();
        if self.backoff_factor >= 1.0 && recent_errors > 1 {
            let exponent = (recent_errors - 1).min(1000) as i32;
            secs *= self.backoff_factor.powi(exponent);
        }
        if !self.max_delay.is_zero() {
            secs = secs.min(self.max_delay.as_secs_f64());
        }
        let fuzzed = secs * (0.9 + 0.2 * jitter.clamp(0.0, 1.0));
        Duration::from_millis((fuzzed * 1000.0).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_what_is_wrong() {
        let mut c = EngineConfig::juju(|_| false);
        assert!(c.validate().is_ok());
        c.backoff_factor = 0.5;
        assert_eq!(c.validate().unwrap_err(), "BackoffFactor 0.5 must be >= 1");
        c.is_fatal = None;
        assert_eq!(c.validate().unwrap_err(), "IsFatal not specified");
    }

    #[test]
    fn delays_grow_with_failures_up_to_the_cap_and_never_shrink() {
        let c = EngineConfig::juju(|_| false);
        let d = Duration::from_secs(3);
        assert_eq!(c.delay(d, 0, 0.5), d, "no failures: the plain delay");
        assert_eq!(c.delay(d, 1, 0.5), d);
        assert_eq!(c.delay(d, 2, 0.5), Duration::from_millis(3600));
        assert_eq!(c.delay(d, 100, 0.5), Duration::from_secs(120), "capped");
        assert_eq!(c.delay(d, 1, 0.0), Duration::from_millis(2700), "-10 %");
        assert_eq!(c.delay(Duration::ZERO, 5, 0.9), Duration::ZERO);
    }
}
