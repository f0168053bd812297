//! Readiness: each part of the agent says whether it is doing its job, and `/readyz` answers
//! 200 only when all do (`/healthz` only says the process answers).
//!
//! A part either holds a [`ReadyFlag`] it sets as it goes (the sensor once its program is
//! attached, cleared when it detaches), or registers a probe evaluated at each request (the
//! bus: are its listeners alive and the lossless queue not full).

use std::sync::{Arc, Mutex};

type Probe = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

enum Check {
    Flag(ReadyFlag),
    Probe(Probe),
    /// Always ready; says how (the enforcement mode and mechanism).
    Detail(Box<dyn Fn() -> String + Send + Sync>),
}

/// The registry; cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

/// One part's state, set by that part.
#[derive(Clone, Debug)]
pub struct ReadyFlag {
    state: Arc<Mutex<Result<(), String>>>,
}

impl ReadyFlag {
    /// A flag not yet ready, for `why`.
    pub fn waiting(why: &str) -> ReadyFlag {
        ReadyFlag {
            state: Arc::new(Mutex::new(Err(why.to_owned()))),
        }
    }

    pub fn ready(&self) {
        *self.lock() = Ok(());
    }

    pub fn not_ready(&self, why: &str) {
        *self.lock() = Err(why.to_owned());
    }

    pub fn get(&self) -> Result<(), String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<(), String>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What `/readyz` answers: one line per part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    pub text: String,
}

impl Readiness {
    /// Registers `name`, not ready for `why` until its flag says so.
    pub fn flag(&self, name: &'static str, why: &str) -> ReadyFlag {
        let flag = ReadyFlag::waiting(why);
        self.add(name, Check::Flag(flag.clone()));
        flag
    }

    /// Registers `name`, evaluated at each request.
    pub fn probe(
        &self,
        name: &'static str,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.add(name, Check::Probe(Box::new(probe)));
    }

    /// Registers `name`, never keeping the agent from being ready, with the line `detail`
    /// gives at each request.
    pub fn detail(&self, name: &'static str, detail: impl Fn() -> String + Send + Sync + 'static) {
        self.add(name, Check::Detail(Box::new(detail)));
    }

    fn add(&self, name: &'static str, check: Check) {
        self.lock().push((name, check));
    }

    pub fn report(&self) -> Report {
        let checks = self.lock();
        let mut ready = true;
        let mut text = String::new();
        for (name, check) in checks.iter() {
            let state = match check {
                Check::Flag(flag) => flag.get(),
                Check::Probe(probe) => probe(),
                Check::Detail(detail) => {
                    text.push_str(&format!("{name}: ok: {}\n", detail()));
                    continue;
                }
            };
            match state {
                Ok(()) => text.push_str(&format!("{name}: ok\n")),
                Err(why) => {
                    ready = false;
                    text.push_str(&format!("{name}: not ready: {why}\n"));
                }
            }
        }
        Report { ready, text }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Check)>> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_part_is() {
        let readiness = Readiness::default();
        let sensor = readiness.flag("sensor", "loading");
        readiness.probe("bus", || Ok(()));
        let r = readiness.report();
        assert!(!r.ready);
        assert_eq!(r.text, "sensor: not ready: loading\nbus: ok\n");
        sensor.ready();
        assert!(readiness.report().ready);
        sensor.not_ready("detached");
        assert!(
            readiness
                .report()
                .text
                .contains("sensor: not ready: detached")
        );
    }

    #[test]
    fn a_detail_says_how_without_affecting_readiness() {
        let readiness = Readiness::default();
        readiness.detail("enforce", || "mode enforce, mechanism sigkill".into());
        let r = readiness.report();
        assert!(r.ready);
        assert_eq!(r.text, "enforce: ok: mode enforce, mechanism sigkill\n");
    }

    #[test]
    fn nothing_registered_is_ready() {
        assert!(Readiness::default().report().ready);
    }
}
