//! Which API errors are worth retrying, and how long to wait between tries.
//!
//! Like client-go's retry helpers: 5xx, 429 and transport failures (connection refused or
//! reset, timeouts) are transient and retried with exponential backoff and jitter; a 409 is
//! a conflict the caller resolves (re-read, or "already replaced"); 404 means the object is
//! gone; other 4xx are permanent (RBAC, validation) and reported, never retried blindly.

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime},
};

use super::config::RetryConfig;

/// What an error means for the action that got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later (5xx, 429, timeout, connection loss).
    Transient,
    /// 409: a precondition or resourceVersion did not hold.
    Conflict,
    /// 404: the object does not exist (any more).
    NotFound,
    /// Other 4xx: retrying the same request cannot succeed.
    Permanent,
}

/// The class of a kube client error.
pub fn classify(err: &kube::Error) -> ErrorClass {
    match err {
        kube::Error::Api(status) => classify_status(status.code),
        // Transport: connection refused/reset, TLS, timeouts, a body cut short.
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ErrorClass::Transient
        }
        kube::Error::HttpError(_) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The class of an HTTP status code.
pub fn classify_status(code: u16) -> ErrorClass {
    match code {
        404 | 410 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Exponential backoff with full jitter over `[initial, max]`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            seed: seed(),
        }
    }

    /// The wait before the next try: a random point in `[next/2, next]`, then `next`
    /// doubles up to `max` (half-jitter keeps retries spread without waiting 0).
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift: spreads agents that failed together; no need for a real RNG here.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = cap / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(self.seed % span)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() | 1
}

/// Why a retried request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// NotFound, Conflict or Permanent as the server said; Transient when the deadline came
    /// first.
    pub class: ErrorClass,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `call` until it succeeds, fails for a reason retrying cannot change, or `deadline`
/// passes; each try is cut after `retry.request_timeout`. `on_retry` runs before each
/// retry (metrics).
pub async fn with_retry<T, F, Fut>(
    retry: &RetryConfig,
    deadline: SystemTime,
    mut on_retry: impl FnMut(&str),
    mut call: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut backoff = Backoff::new(retry.initial_backoff, retry.max_backoff);
    loop {
        let message = match tokio::time::timeout(retry.request_timeout, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                let class = classify(&e);
                if class != ErrorClass::Transient {
                    return Err(Failure {
                        class,
                        message: e.to_string(),
                    });
                }
                e.to_string()
            }
            Err(_) => format!("no answer within {:?}", retry.request_timeout),
        };
        let wait = backoff.next_delay();
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left <= wait {
            return Err(Failure {
                class: ErrorClass::Transient,
                message: format!("still failing at the deadline: {message}"),
            });
        }
        on_retry(&message);
        let until = Instant::now() + wait;
        tokio::time::sleep_until(until.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(503), ErrorClass::Transient);
        assert_eq!(classify_status(429), ErrorClass::Transient);
        assert_eq!(classify_status(409), ErrorClass::Conflict);
        assert_eq!(classify_status(404), ErrorClass::NotFound);
        assert_eq!(classify_status(403), ErrorClass::Permanent);
        assert_eq!(classify_status(422), ErrorClass::Permanent);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(delays[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
