//! Injected failures: API errors answered instead of serving matching requests, chosen by verb
//! and resource, each for a number of requests or until cleared. The request is logged and
//! answered with the error's `Status`, exactly as a failing API server would answer it.

use super::ApiError;

/// A request's verb, as Kubernetes authorisation names them (a watch is a GET with
/// `watch=true`, an eviction a `create` on `pods/eviction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

/// One injected failure.
#[derive(Clone, Debug)]
pub struct Fault {
    verb: Verb,
    resource: String,
    error: ApiError,
    /// Requests still to fail; `None`: every one until cleared.
    remaining: Option<usize>,
}

impl Fault {
    /// Every `verb` request on `resource` (`pods`, `apps/replicasets`, `pods/status`: the
    /// resource as RBAC names it, group-qualified) is answered with `error`, until
    /// [`ApiServer::clear_faults`](super::ApiServer::clear_faults).
    pub fn new(verb: Verb, resource: &str, error: ApiError) -> Self {
        Self {
            verb,
            resource: resource.to_owned(),
            error,
            remaining: None,
        }
    }

    /// Only the next `n` matching requests fail.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// The faults in force, first added first matched.
#[derive(Default)]
pub struct FaultPlan {
    faults: Vec<Fault>,
}

impl FaultPlan {
    pub fn add(&mut self, fault: Fault) {
        if fault.remaining != Some(0) {
            self.faults.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// The error to answer this request with, if a fault matches; uses up one of its requests.
    pub fn take(&mut self, verb: Verb, resource: &str) -> Option<ApiError> {
        let index = self
            .faults
            .iter()
            .position(|f| f.verb == verb && f.resource == resource)?;
        let fault = &mut self.faults[index];
        let error = fault.error.clone();
        if let Some(left) = &mut fault.remaining {
            *left -= 1;
            if *left == 0 {
                self.faults.remove(index);
            }
        }
        Some(error)
    }
}

/// A delay before a matching request is served: how a timeout looks from the client (set it
/// longer than the client waits).
#[derive(Clone, Debug)]
pub struct Stall {
    method: String,
    path_contains: String,
    delay: std::time::Duration,
    remaining: usize,
}

impl Stall {
    /// The next `times` requests with this HTTP method whose path contains `path_contains`
    /// are served only after `delay`.
    pub fn new(
        method: &str,
        path_contains: &str,
        delay: std::time::Duration,
        times: usize,
    ) -> Self {
        Self {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            delay,
            remaining: times,
        }
    }
}

/// The stalls in force.
#[derive(Default)]
pub struct StallPlan {
    stalls: Vec<Stall>,
}

impl StallPlan {
    pub fn add(&mut self, stall: Stall) {
        if stall.remaining > 0 {
            self.stalls.push(stall);
        }
    }

    pub fn clear(&mut self) {
        self.stalls.clear();
    }

    /// The delay for this request, if a stall matches; uses up one of its requests.
    pub fn take(&mut self, method: &str, path: &str) -> Option<std::time::Duration> {
        let index = self
            .stalls
            .iter()
            .position(|s| s.method == method && path.contains(&s.path_contains))?;
        let stall = &mut self.stalls[index];
        let delay = stall.delay;
        stall.remaining -= 1;
        if stall.remaining == 0 {
            self.stalls.remove(index);
        }
        Some(delay)
    }
}
