//! Kubernetes REST paths → store operations, with real API semantics for status codes,
//! `Status` bodies, list metadata, watch streams, dryRun and delete preconditions.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    ApiError, Shared,
    faults::Verb,
    patch,
    resources::ResourceType,
    select::{FieldSelector, LabelSelector},
    store::{Part, Preconditions, WatchFilter},
};

/// One request against a resource path.
struct Target {
    rt: ResourceType,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.log_request(&method, &uri);
    let stall = shared
        .stalls
        .lock()
        .unwrap()
        .take(method.as_str(), uri.path());
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    match route(&shared, &method, &uri, &query, &headers, &body) {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn route(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if *method == Method::GET {
        let resources = shared.resources.lock().unwrap().clone();
        if let Some(doc) = super::discovery::document(uri.path(), &resources) {
            return Ok(json_response(StatusCode::OK, &doc));
        }
    }
    if uri.path() == "/version" {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-youwatch-test"}),
        ));
    }
    let target = parse_path(shared, uri.path())?;
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let ns = target.ns.clone().unwrap_or_default();
    if target.rt.namespaced
        && target.ns.is_none()
        && !(method == Method::GET && target.name.is_none())
    {
        return Err(ApiError::not_found_path(uri.path()));
    }
    if let Some(sub) = &target.sub
        && !target.rt.subresources.contains(sub)
    {
        return Err(ApiError::not_found_path(uri.path()));
    }
    let rt = &target.rt;
    let verb = verb(method, &target, query);
    if let Some(error) = verb.and_then(|v| shared.fault(v, &target.resource())) {
        return Err(error);
    }
    match (
        method.clone(),
        target.name.as_deref(),
        target.sub.as_deref(),
    ) {
        (Method::GET, None, None) => {
            let selectors = selectors(rt, query)?;
            if verb == Some(Verb::Watch) {
                watch(shared, &target, selectors, query)
            } else {
                list(shared, &target, selectors, query)
            }
        }
        (Method::GET, Some(name), None | Some("status" | "ephemeralcontainers")) => {
            let store = shared.store();
            let object = store
                .get(&rt.plural_key(), &ns, name)
                .ok_or_else(|| ApiError::not_found(rt, name))?;
            Ok(json_response(StatusCode::OK, object))
        }
        (Method::POST, None, None) => {
            let object = parse_body(body)?;
            let created = shared.store().create(rt, &ns, object, dry_run, false)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::POST, Some(name), Some("eviction")) => {
            let eviction = parse_body(body)?;
            let preconditions = preconditions(&eviction["deleteOptions"]);
            let dry = dry_run || is_dry_run(&eviction["deleteOptions"]);
            shared.store().delete(rt, &ns, name, &preconditions, dry)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::PUT, Some(name), sub) => {
            let object = parse_body(body)?;
            let updated = shared
                .store()
                .update(rt, &ns, name, object, part(sub), dry_run)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name), sub) => {
            let patch_body = parse_body(body)?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut store = shared.store();
            let mut object = store
                .get(&rt.plural_key(), &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(rt, name))?;
            match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    patch::merge(&mut object, &patch_body)
                }
                "application/json-patch+json" => patch::json_patch(&mut object, &patch_body)?,
                other => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UnsupportedMediaType",
                        &format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?}; server-side apply is not served by the test API server)"
                        ),
                    ));
                }
            }
            let updated = store.update(rt, &ns, name, object, part(sub), dry_run)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::DELETE, Some(name), None) => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body)?
            };
            let preconditions = preconditions(&options["preconditions"]);
            let dry = dry_run || is_dry_run(&options);
            let deleted = shared.store().delete(rt, &ns, name, &preconditions, dry)?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({method} {})",
                uri.path()
            ),
        )),
    }
}

/// The request's verb as RBAC names it (`None` for methods the server does not serve).
fn verb(method: &Method, target: &Target, query: &HashMap<String, String>) -> Option<Verb> {
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    Some(match (method.clone(), target.name.is_some()) {
        (Method::GET, false) if watch => Verb::Watch,
        (Method::GET, false) => Verb::List,
        (Method::GET, true) => Verb::Get,
        (Method::POST, _) => Verb::Create,
        (Method::PUT, _) => Verb::Update,
        (Method::PATCH, _) => Verb::Patch,
        (Method::DELETE, _) => Verb::Delete,
        _ => return None,
    })
}

impl Target {
    /// `pods`, `pods/status`, `apps/replicasets`: the resource as RBAC and faults name it.
    fn resource(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}/{sub}", self.rt.plural_key()),
            None => self.rt.plural_key(),
        }
    }
}

fn part(sub: Option<&str>) -> Part {
    match sub {
        Some("status") => Part::Status,
        Some("ephemeralcontainers") => Part::EphemeralContainers,
        _ => Part::Main,
    }
}

fn preconditions(value: &Value) -> Preconditions {
    Preconditions {
        uid: value["uid"].as_str().map(str::to_owned),
        resource_version: value["resourceVersion"].as_str().map(str::to_owned),
    }
}

fn is_dry_run(options: &Value) -> bool {
    options["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"))
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(&format!("the request body is not JSON: {e}")))
}

/// `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced or not.
fn parse_path(shared: &Shared, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::not_found_path(path)),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::not_found_path(path)),
    };
    let rt = shared
        .resource(group, version, plural)
        .ok_or_else(|| ApiError::not_found_path(path))?;
    Ok(Target {
        rt,
        ns,
        name: name.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

fn selectors(
    rt: &ResourceType,
    query: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str), rt)?;
    Ok((labels, fields))
}

fn list(
    shared: &Shared,
    target: &Target,
    (labels, fields): (LabelSelector, FieldSelector),
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let rt = &target.rt;
    let store = shared.store();
    let mut items: Vec<&Value> = store
        .list(&rt.plural_key(), target.ns.as_deref())
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    // limit/continue: the token is the index to resume from, tied to the list's version.
    let rv = store.resource_version();
    let start = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (token_rv, index) = token
                .split_once(':')
                .and_then(|(r, i)| Some((r.parse::<u64>().ok()?, i.parse::<usize>().ok()?)))
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            if token_rv != rv {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            index
        }
        None => 0,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let remaining = items.len().saturating_sub(start);
    items = items
        .into_iter()
        .skip(start)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit
        && remaining > limit
    {
        metadata["continue"] = format!("{rv}:{}", start + limit).into();
        metadata["remainingItemCount"] = (remaining - limit).into();
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn watch(
    shared: &Shared,
    target: &Target,
    (labels, fields): (LabelSelector, FieldSelector),
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let rt = &target.rt;
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(&format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let filter = WatchFilter {
        resource: rt.plural_key(),
        namespace: target.ns.clone(),
        labels,
        fields,
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
        kind: rt.kind.clone(),
        api_version: rt.api_version(),
    };
    let initial_end = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let rx = shared.store().watch(filter, from, initial_end)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        let next = match deadline {
            Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        next.map(|line| (Ok::<_, std::io::Error>(Bytes::from(line)), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).expect("JSON values serialise"),
    )
        .into_response()
}
