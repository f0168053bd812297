//! The project's test API server: a real HTTP server on loopback with Kubernetes semantics
//! for the resources the agent uses (pods, events, ingresses, replicasets, deployments,
//! statefulsets, daemonsets, services, nodes; more with [`ApiServer::add_resource`]), driven
//! by tests.
//!
//! Served: get, list (label and field selectors, limit/continue, resourceVersion), watch
//! (ADDED/MODIFIED/DELETED as selectors see transitions, BOOKMARK, ERROR 410 Gone for
//! compacted versions, timeoutSeconds, sendInitialEvents), create (409 AlreadyExists,
//! generateName), update (409 on a stale resourceVersion or a different uid), merge and JSON
//! patch (strategic merge patch is applied as a merge patch), delete with `uid` and
//! `resourceVersion` preconditions (409), `dryRun=All`, the pod subresources `status`,
//! `ephemeralcontainers` and `eviction`; `Status` bodies with reason and code on errors.
//!
//! Test controls: create/update/delete objects directly, [`ApiServer::fail_watches`] (ERROR 410
//! to every open watch), [`ApiServer::drop_watches`], [`ApiServer::restart`] (connections
//! dropped, port refused while down, history forgotten like a fresh watch cache: clients
//! must re-list) and [`ApiServer::restart_with`] for restarts that lose more,
//! [`ApiServer::set_watch_refusal`] (a watch the server cannot serve is refused with an ERROR
//! event, as kube-apiserver does, or with an HTTP status), [`ApiServer::inject`] (API errors by
//! verb and resource, see [`faults`]), [`ApiServer::bookmark`], and a timed log of requests.
//!
//! The agent talks to it with the real `kube::Client` ([`ApiServer::client`]) or a kubeconfig
//! file ([`ApiServer::write_kubeconfig`]); nothing in `src/` knows it exists.

mod discovery;
pub mod faults;
mod http;
mod patch;
pub mod resources;
mod select;
mod store;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use hyper_util::rt::TokioIo;
use resources::ResourceType;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet};

use faults::{Fault, FaultPlan};
use store::{Part, Store};
pub use store::{Preconditions, WatchRefusal};

/// A random UID, as the API server assigns to `metadata.uid` (for
/// [`ApiServer::create_with_uid`]).
pub fn uuid() -> String {
    store::uuid()
}

/// Requests remembered for [`ApiServer::requests`].
const REQUEST_LOG: usize = 1000;

/// A Kubernetes API error: HTTP status, `reason`, message (rendered as a `Status` object).
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: String,
    pub message: String,
    details: Value,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &str, message: &str) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
        self
    }

    pub fn bad_request(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} \"{name}\" not found", qualified(rt)),
        )
        .with_details(rt, name)
    }

    pub fn not_found_path(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", qualified(rt)),
        )
        .with_details(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(rt)
            ),
        )
        .with_details(rt, name)
    }

    pub fn invalid(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("{} \"{name}\" is invalid: {why}", rt.kind),
        )
        .with_details(rt, name)
    }

    pub fn unprocessable(message: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    pub fn gone(message: &str) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 500, as kube-apiserver answers when its storage fails.
    pub fn internal(message: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("Internal error occurred: {message}"),
        )
        .with_causes(&[("", message)])
    }

    /// 504 with cause `ResourceVersionTooLarge`: kube-apiserver's answer to a request for a
    /// resourceVersion it has not reached (after waiting up to 3 s for it).
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut err = Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            &format!("Timeout: Too large resource version: {requested}, current: {current}"),
        )
        .with_causes(&[("ResourceVersionTooLarge", "Too large resource version")]);
        err.details["retryAfterSeconds"] = 1.into();
        err
    }

    fn with_causes(mut self, causes: &[(&str, &str)]) -> Self {
        let causes: Vec<Value> = causes
            .iter()
            .map(|(reason, message)| {
                if reason.is_empty() {
                    json!({"message": message})
                } else {
                    json!({"reason": reason, "message": message})
                }
            })
            .collect();
        if self.details.is_null() {
            self.details = json!({});
        }
        self.details["causes"] = causes.into();
        self
    }

    /// The `Status` object a real API server returns.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        http::json_response(self.code, &self.status())
    }
}

fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// State shared by the HTTP handlers and the test's controls.
pub struct Shared {
    store: Mutex<Store>,
    resources: Mutex<Vec<ResourceType>>,
    requests: Mutex<VecDeque<(Instant, String)>>,
    faults: Mutex<FaultPlan>,
    stalls: Mutex<faults::StallPlan>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.resources
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    fn resource_by_key(&self, key: &str) -> ResourceType {
        self.resources
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.plural_key() == key)
            .cloned()
            .unwrap_or_else(|| panic!("the test API server serves no resource {key:?}"))
    }

    fn log_request(&self, method: &Method, uri: &Uri) {
        let mut log = self.requests.lock().unwrap();
        if log.len() == REQUEST_LOG {
            log.pop_front();
        }
        log.push_back((Instant::now(), format!("{method} {uri}")));
    }

    /// The injected error for this request, if any.
    fn fault(&self, verb: faults::Verb, resource: &str) -> Option<ApiError> {
        self.faults.lock().unwrap().take(verb, resource)
    }
}

/// The listener and its connections, so a restart can drop them all.
struct Serving {
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    serving: Mutex<Option<Serving>>,
}

impl ApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the test API server on loopback");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            resources: Mutex::new(resources::defaults()),
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::new(FaultPlan::default()),
            stalls: Mutex::new(faults::StallPlan::default()),
        });
        let server = ApiServer {
            shared,
            addr,
            serving: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(self.shared.clone());
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let conns = connections.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let mut set = conns.lock().unwrap();
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.serving.lock().unwrap() = Some(Serving {
            accept,
            connections,
        });
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A real kube client for this server.
    /// A client configured as the agent configures its own (no hidden retry layer).
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_retry = false;
        kube::Client::try_from(config).expect("a kube client for the test API server")
    }

    /// Writes a kubeconfig for this server into `dir`; returns its path (for `$KUBECONFIG`).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             users:\n- name: test\n  user:\n    token: test-token\n",
            self.url()
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path
    }

    /// Stops serving: open connections (watches included) are dropped and new ones refused.
    pub fn stop(&self) {
        if let Some(serving) = self.serving.lock().unwrap().take() {
            serving.accept.abort();
            serving.connections.lock().unwrap().abort_all();
        }
        self.shared.store().drop_watches();
    }

    /// Restarts like a real API server: connections dropped, the port refused for `down`,
    /// objects kept, the event history forgotten (watches resuming from before get 410 Gone
    /// and must re-list). Changes made while down are what clients must notice.
    pub async fn restart(&self, down: Duration, while_down: impl FnOnce(&ApiServer)) {
        self.restart_with(Restart::KeepVersions, down, while_down)
            .await;
    }

    /// [`restart`](Self::restart), losing what `how` says.
    pub async fn restart_with(
        &self,
        how: Restart,
        down: Duration,
        while_down: impl FnOnce(&ApiServer),
    ) {
        self.stop();
        while_down(self);
        tokio::time::sleep(down).await;
        {
            let mut store = self.shared.store();
            match how {
                Restart::KeepVersions => store.compact(),
                Restart::ResetVersions => store.reset_versions(),
                Restart::LoseEvents => store.forget_silently(),
            }
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-binding the test API server's port");
        self.serve(listener);
    }

    // ---- test controls -----------------------------------------------------------------------

    /// How watches the server cannot serve are refused from now on (default:
    /// [`WatchRefusal::ErrorEvent`], as kube-apiserver does).
    pub fn set_watch_refusal(&self, refusal: WatchRefusal) {
        self.shared.store().watch_refusal = refusal;
    }

    /// Adds a fault: matching requests are answered with its error.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().add(fault);
    }

    /// Removes every fault and stall.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
        self.shared.stalls.lock().unwrap().clear();
    }

    /// Delays matching requests (a slow or hung API server, as a client's timeout sees it).
    pub fn stall(&self, stall: faults::Stall) {
        self.shared.stalls.lock().unwrap().add(stall);
    }

    /// Serves another resource type.
    pub fn add_resource(&self, rt: ResourceType) {
        self.shared.resources.lock().unwrap().push(rt);
    }

    /// Creates an object (`resource` as in `pods`, `apps/replicasets`) as a client would.
    pub fn create(&self, resource: &str, ns: &str, object: Value) -> Value {
        self.try_create(resource, ns, object)
            .unwrap_or_else(|e| panic!("creating {resource} in {ns}: {}", e.message))
    }

    pub fn try_create(&self, resource: &str, ns: &str, object: Value) -> Result<Value, ApiError> {
        let rt = self.shared.resource_by_key(resource);
        self.shared.store().create(&rt, ns, object, false, false)
    }

    /// Creates an object keeping its `metadata.uid` (a real API server assigns its own; tests
    /// that must know a pod's UID before it is announced use this).
    pub fn create_with_uid(&self, resource: &str, ns: &str, object: Value) -> Value {
        let rt = self.shared.resource_by_key(resource);
        self.shared
            .store()
            .create(&rt, ns, object, false, true)
            .unwrap_or_else(|e| panic!("creating {resource} in {ns}: {}", e.message))
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let rt = self.shared.resource_by_key(resource);
        self.shared.store().get(&rt.plural_key(), ns, name).cloned()
    }

    /// Applies `change` to the stored object and stores it (unconditionally).
    pub fn modify(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Value {
        let rt = self.shared.resource_by_key(resource);
        let mut store = self.shared.store();
        let mut object = store
            .get(&rt.plural_key(), ns, name)
            .cloned()
            .unwrap_or_else(|| panic!("no {resource} {ns}/{name} to modify"));
        change(&mut object);
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        store
            .update(&rt, ns, name, object, Part::Whole, false)
            .unwrap_or_else(|e| panic!("modifying {resource} {ns}/{name}: {}", e.message))
    }

    pub fn delete(&self, resource: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
        let rt = self.shared.resource_by_key(resource);
        self.shared
            .store()
            .delete(&rt, ns, name, &Preconditions::default(), false)
    }

    /// ERROR 410 Gone to every open watch, which is then closed.
    pub fn fail_watches(&self) {
        self.shared.store().fail_watches();
    }

    /// Ends every open watch stream (no error event).
    pub fn drop_watches(&self) {
        self.shared.store().drop_watches();
    }

    /// Forgets the event history: watches resuming from an older version get 410 Gone.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// A BOOKMARK to every watch that allows them.
    pub fn bookmark(&self) {
        self.shared.store().bookmark_all();
    }

    pub fn open_watches(&self) -> usize {
        self.shared.store().open_watches()
    }

    /// Waits until at least `n` watches are open; panics after `timeout`.
    pub async fn wait_for_watches(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.open_watches() < n {
            assert!(
                Instant::now() < deadline,
                "no {n} open watch(es) after {timeout:?}; requests: {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the events of `resource_version` were handed to the open watches.
    pub fn sent_at(&self, resource_version: u64) -> Option<Instant> {
        self.shared
            .store()
            .sent_at
            .iter()
            .find(|(rv, _)| *rv == resource_version)
            .map(|(_, t)| *t)
    }

    /// `METHOD /path?query` of the requests served, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.timed_requests().into_iter().map(|(_, r)| r).collect()
    }

    /// The requests served with when they arrived, oldest first.
    pub fn timed_requests(&self) -> Vec<(Instant, String)> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect()
    }
}

/// What an API server restart loses besides its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The datastore survives and the watch cache starts empty: a watch resuming from before
    /// the restart is refused with 410 Gone (as [`ApiServer::set_watch_refusal`] says).
    KeepVersions,
    /// The datastore was restored from a backup or recreated: the objects are there, but
    /// resourceVersions start again from 1 (one per object), below what clients saw. A watch
    /// resuming from a version the server has not reached is refused with 504 "Too large
    /// resource version", as kube-apiserver does (without its 3 s wait); one from a lower
    /// version with 410 Gone.
    ResetVersions,
    /// Events lost without a word: watches resuming from before the restart are accepted and
    /// see only what changes afterwards. No conforming server does this on purpose; it stands
    /// for every lost event a periodic re-list has to correct.
    LoseEvents,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
