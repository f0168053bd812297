//! The test API server's storage: objects, one global resourceVersion counter (as etcd's),
//! a bounded event history for watches to resume from, and the open watches.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Instant,
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    ApiError,
    resources::ResourceType,
    select::{FieldSelector, LabelSelector},
};

/// Events kept for watches to resume from; older ones are compacted away (→ 410 Gone).
const HISTORY: usize = 10_000;
/// Lines buffered per watch; a watch that falls further behind is closed, as a real API
/// server closes slow watchers.
const WATCH_BUFFER: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

struct Change {
    rv: u64,
    resource: String,
    kind: EventType,
    object: Value,
    /// The object before a modification (selectors see transitions, as the watch cache does).
    old: Option<Value>,
}

/// What a watch wants to see.
pub struct WatchFilter {
    pub resource: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    /// `kind` and `apiVersion` for bookmark objects.
    pub kind: String,
    pub api_version: String,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event this watch sees for a change, if any.
    fn view(&self, change: &Change) -> Option<(EventType, Value)> {
        if change.resource != self.resource {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|o| self.matches(o));
        let kind = match (change.kind, before, now) {
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Modified, false, false) => return None,
            (kind, _, true) => kind,
            (_, _, false) => return None,
        };
        Some((kind, change.object.clone()))
    }
}

struct Watch {
    filter: WatchFilter,
    tx: mpsc::Sender<Vec<u8>>,
}

/// How the server refuses a watch it cannot serve (a version it no longer has or has not
/// reached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchRefusal {
    /// HTTP 200, one `ERROR` event, end of stream: kube-apiserver's answer once the request is
    /// authorised and its resourceVersion parsed.
    #[default]
    ErrorEvent,
    /// An HTTP error status with the `Status` body, before any stream: what other API servers
    /// and proxies answer. client-go re-lists on both forms.
    Status,
}

pub struct Store {
    rv: u64,
    /// resource → (namespace, name) → object.
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: VecDeque<Change>,
    /// Watches may resume from versions > this; older ones get 410 Gone.
    compacted: u64,
    watches: Vec<Watch>,
    pub watch_refusal: WatchRefusal,
    /// When the last event was handed to the open watches (benchmarks measure from here).
    pub last_sent: Option<Instant>,
    /// Versions whose events were handed to watches, with when (bounded, for benchmarks).
    pub sent_at: VecDeque<(u64, Instant)>,
}

impl Store {
    pub fn new() -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            watches: Vec::new(),
            watch_refusal: WatchRefusal::default(),
            last_sent: None,
            sent_at: VecDeque::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(resource)?
            .get(&(ns.to_owned(), name.to_owned()))
    }

    /// Objects of `resource` (in `ns` when given), sorted by namespace and name.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect()
    }

    /// Stores a new object (metadata filled in as the API server does) and notifies watches.
    /// `keep_uid`: keep the object's own `metadata.uid` (test controls only; the API ignores
    /// a client's uid).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut object: Value,
        dry_run: bool,
        keep_uid: bool,
    ) -> Result<Value, ApiError> {
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata is required"))?;
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{}", &random_hex(3)[..5]),
                None => return Err(ApiError::invalid(rt, "", "metadata.name: Required value")),
            },
        };
        meta.insert("name".into(), name.clone().into());
        if rt.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        let key = (ns.to_owned(), name.clone());
        if self
            .objects
            .get(&rt.plural_key())
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        if !keep_uid || !meta.get("uid").is_some_and(Value::is_string) {
            meta.insert("uid".into(), uuid().into());
        }
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
        meta.insert("generation".into(), 1.into());
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        self.store(rt, key, object, None, dry_run)
    }

    /// Replaces an object. A resourceVersion in `object` must equal the stored one (409
    /// otherwise); without one the update is unconditional. `keep` says which parts of the
    /// stored object survive (a status update keeps the spec, a spec update the status).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut object: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.current(rt, ns, name)?;
        let given_rv = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !given_rv.is_empty() && given_rv != current["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let given_name = object["metadata"]["name"].as_str().unwrap_or(name);
        if given_name != name {
            return Err(ApiError::bad_request(&format!(
                "the name of the object ({given_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(uid) = object["metadata"]["uid"].as_str()
            && !uid.is_empty()
            && current["metadata"]["uid"] != uid
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "Precondition failed: UID in object meta",
            ));
        }
        let mut updated = current.clone();
        match part {
            Part::Main | Part::Whole => {
                // Everything but status and server-owned metadata comes from the request.
                let status = current.get("status").cloned();
                let server_meta = current["metadata"].clone();
                updated = object.take();
                for key in [
                    "uid",
                    "creationTimestamp",
                    "namespace",
                    "name",
                    "generation",
                ] {
                    updated["metadata"][key] = server_meta[key].clone();
                }
                if let Some(ts) = server_meta.get("deletionTimestamp") {
                    updated["metadata"]["deletionTimestamp"] = ts.clone();
                }
                match status {
                    _ if part == Part::Whole => {}
                    Some(status) => updated["status"] = status,
                    None => {
                        if let Some(o) = updated.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                if updated.get("spec") != current.get("spec") {
                    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                    updated["metadata"]["generation"] = (generation + 1).into();
                }
            }
            Part::Status => updated["status"] = object["status"].take(),
            Part::EphemeralContainers => {
                updated["spec"]["ephemeralContainers"] =
                    object["spec"]["ephemeralContainers"].take();
            }
        }
        self.store(
            rt,
            (ns.to_owned(), name.to_owned()),
            updated,
            Some(current),
            dry_run,
        )
    }

    /// Deletes an object, checking the uid and resourceVersion preconditions (409 when they
    /// do not hold). Returns the object as it was.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        preconditions: &Preconditions,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.current(rt, ns, name)?;
        if let Some(uid) = &preconditions.uid
            && current["metadata"]["uid"] != uid.as_str()
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &preconditions.resource_version
            && current["metadata"]["resourceVersion"] != rv.as_str()
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                ),
            ));
        }
        if dry_run {
            return Ok(current);
        }
        self.objects
            .get_mut(&rt.plural_key())
            .map(|m| m.remove(&(ns.to_owned(), name.to_owned())));
        self.rv += 1;
        let mut gone = current;
        gone["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.record(rt, EventType::Deleted, gone.clone(), None);
        Ok(gone)
    }

    fn current(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.get(&rt.plural_key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Writes a created (`old` None) or updated object at the next resourceVersion and tells
    /// the watches; with `dry_run` only returns what would be stored.
    fn store(
        &mut self,
        rt: &ResourceType,
        key: (String, String),
        mut object: Value,
        old: Option<Value>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        object["apiVersion"] = rt.api_version().into();
        object["kind"] = rt.kind.clone().into();
        if dry_run {
            return Ok(object);
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.objects
            .entry(rt.plural_key())
            .or_default()
            .insert(key, object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(rt, kind, object.clone(), old);
        Ok(object)
    }

    fn record(&mut self, rt: &ResourceType, kind: EventType, object: Value, old: Option<Value>) {
        let change = Change {
            rv: self.rv,
            resource: rt.plural_key(),
            kind,
            object,
            old,
        };
        let now = Instant::now();
        self.watches.retain(|w| match w.filter.view(&change) {
            Some((kind, object)) => w.tx.try_send(event_line(kind.name(), &object)).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.last_sent = Some(now);
        self.sent_at.push_back((change.rv, now));
        if self.sent_at.len() > HISTORY {
            self.sent_at.pop_front();
        }
        self.history.push_back(change);
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Opens a watch from `from` (`None`: the current state as synthetic ADDED events, then
    /// changes). When `from` was compacted away (410 Gone) or is beyond the current version
    /// (504 "Too large resource version") the watch is refused as `watch_refusal` says.
    pub fn watch(
        &mut self,
        filter: WatchFilter,
        from: Option<u64>,
        initial_events_end: bool,
    ) -> Result<mpsc::Receiver<Vec<u8>>, ApiError> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let backlog: Vec<Vec<u8>> = match from {
            Some(rv) if rv < self.compacted => {
                return self.refuse(ApiError::gone(&format!(
                    "too old resource version: {rv} ({})",
                    self.compacted
                )));
            }
            Some(rv) if rv > self.rv => {
                return self.refuse(ApiError::too_large_resource_version(rv, self.rv));
            }
            Some(rv) => self
                .history
                .iter()
                .filter(|c| c.rv > rv)
                .filter_map(|c| filter.view(c))
                .map(|(kind, object)| event_line(kind.name(), &object))
                .collect(),
            None => {
                let mut lines: Vec<Vec<u8>> = self
                    .list(&filter.resource, filter.namespace.as_deref())
                    .into_iter()
                    .filter(|o| filter.matches(o))
                    .map(|o| event_line("ADDED", o))
                    .collect();
                if initial_events_end {
                    let mut mark = bookmark(&filter, self.rv);
                    mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                    lines.push(event_line("BOOKMARK", &mark));
                }
                lines
            }
        };
        for line in backlog {
            if tx.try_send(line).is_err() {
                return self.refuse(ApiError::gone(
                    "more changes to replay than a watch buffers; re-list",
                ));
            }
        }
        self.watches.push(Watch { filter, tx });
        Ok(rx)
    }

    fn refuse(&self, error: ApiError) -> Result<mpsc::Receiver<Vec<u8>>, ApiError> {
        match self.watch_refusal {
            WatchRefusal::ErrorEvent => Ok(error_stream(&error)),
            WatchRefusal::Status => Err(error),
        }
    }

    /// Sends a BOOKMARK at the current version to every watch that asked for bookmarks.
    pub fn bookmark_all(&mut self) {
        let rv = self.rv;
        self.watches.retain(|w| {
            !w.filter.bookmarks
                || w.tx
                    .try_send(event_line("BOOKMARK", &bookmark(&w.filter, rv)))
                    .is_ok()
        });
    }

    /// Sends `ERROR 410 Gone` to every open watch and closes it (what a real API server does
    /// when its watch cache cannot serve a watcher any more).
    pub fn fail_watches(&mut self) {
        let status = ApiError::gone("too old resource version (injected)").status();
        for w in self.watches.drain(..) {
            let _ = w.tx.try_send(event_line("ERROR", &status));
        }
    }

    /// Closes every open watch without a word (the connection goes away).
    pub fn drop_watches(&mut self) {
        self.watches.clear();
    }

    /// Forgets the event history, as a restarted API server's fresh watch cache does: watches
    /// resuming from an older version get 410 Gone and must re-list.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Versions start again from 1, one per object (a datastore restored or recreated);
    /// the history is gone.
    pub fn reset_versions(&mut self) {
        self.rv = 1;
        for object in self.objects.values_mut().flat_map(|m| m.values_mut()) {
            self.rv += 1;
            object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        }
        self.compact();
    }

    /// Forgets the history but accepts watches from any earlier version, replaying nothing.
    pub fn forget_silently(&mut self) {
        self.history.clear();
        self.compacted = 0;
    }

    pub fn open_watches(&self) -> usize {
        self.watches.iter().filter(|w| !w.tx.is_closed()).count()
    }
}

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object (status is kept from the stored one).
    Main,
    /// `/status`: only the status.
    Status,
    /// `/ephemeralcontainers`: only `spec.ephemeralContainers`.
    EphemeralContainers,
    /// Spec and status at once (test controls only; no API request can do this).
    Whole,
}

#[derive(Debug, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A watch stream holding only an `ERROR` event.
fn error_stream(error: &ApiError) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(event_line("ERROR", &error.status()));
    rx
}

fn bookmark(filter: &WatchFilter, rv: u64) -> Value {
    json!({
        "kind": filter.kind,
        "apiVersion": filter.api_version,
        "metadata": {"resourceVersion": rv.to_string()},
    })
}

fn event_line(kind: &str, object: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialise");
    line.push(b'\n');
    line
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random (version 4) UUID, as the API server assigns to `metadata.uid`.
pub fn uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
