//! The HTTP surface: discovery, the resource paths, watch streams, request log and
//! injected failures. One fallback handler parses the path the way the apiserver does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::errors::ApiError;
use super::patch::{self, PatchKind};
use super::resources::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{ObjectStore, Preconditions, Subresource, WatchFilter};
use super::table::{self, IncludeObject};

/// One request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path without the query, e.g. `/apis/quire.dev/v1alpha1/namespaces/default/reportrequests`.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `path?query` as sent (re-encoded).
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.query)
            .finish();
        format!("{}?{query}", self.path)
    }

    /// True for a watch request.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

/// A rule making matching requests fail.
#[derive(Clone, Debug)]
struct Failure {
    /// Empty or `*`: any method.
    method: String,
    path_contains: String,
    remaining: usize,
    status: u16,
}

/// What the handler shares: the store plus this server's log and failure rules.
pub(crate) struct AppState {
    pub store: ObjectStore,
    pub log: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<Vec<Failure>>,
    bookmark_interval: Mutex<Duration>,
    /// Bumped to end this server's open watch streams (when it stops).
    closed_tx: tokio::sync::watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AppState {
    pub(crate) fn new(store: ObjectStore) -> Self {
        Self {
            store,
            log: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(Duration::from_secs(30)),
            closed_tx: tokio::sync::watch::channel(0).0,
        }
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).clone()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn fail_next(&self, method: &str, path_contains: &str, times: usize, status: u16) {
        lock(&self.failures).push(Failure {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            remaining: times,
            status,
        });
    }

    pub(crate) fn clear_failures(&self) {
        lock(&self.failures).clear();
    }

    /// Ends the watch streams this server has open.
    pub(crate) fn close_own_watches(&self) {
        self.closed_tx.send_modify(|epoch| *epoch += 1);
    }

    pub(crate) fn set_bookmark_interval(&self, interval: Duration) {
        *lock(&self.bookmark_interval) = interval;
    }

    fn take_failure(&self, method: &Method, path: &str) -> Option<u16> {
        let mut failures = lock(&self.failures);
        let rule = failures.iter_mut().find(|f| {
            f.remaining > 0
                && (f.method.is_empty() || f.method == "*" || f.method == method.as_str())
                && path.contains(&f.path_contains)
        })?;
        rule.remaining -= 1;
        let status = rule.status;
        failures.retain(|f| f.remaining > 0);
        Some(status)
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    bytes.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .expect("a response with a valid status and header builds")
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

/// The one handler: logs, injects failures, dispatches.
pub(crate) async fn handle(
    State(app): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut record = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        content_type: header_text(header::CONTENT_TYPE),
        accept: header_text(header::ACCEPT),
        status: 0,
    };
    let response = match app.take_failure(&method, uri.path()) {
        Some(code) => error_response(&ApiError::injected(code)),
        None => {
            let params: HashMap<String, String> = query.into_iter().collect();
            let request = Request {
                method,
                path: uri.path().to_owned(),
                params,
                content_type: record.content_type.clone().unwrap_or_default(),
                accept: record.accept.clone().unwrap_or_default(),
                body,
            };
            match dispatch(&app, request).await {
                Ok(response) => response,
                Err(err) => error_response(&err),
            }
        }
    };
    record.status = response.status().as_u16();
    lock(&app.log).push(record);
    response
}

struct Request {
    method: Method,
    path: String,
    params: HashMap<String, String>,
    content_type: String,
    accept: String,
    body: Bytes,
}

impl Request {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// The resource path, parsed.
struct Target {
    res: Arc<ResourceInfo>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Subresource,
}

async fn dispatch(app: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let store = &app.store;
    let trimmed = req.path.trim_matches('/').to_owned();
    let segments: Vec<&str> = trimmed.split('/').collect();
    let get = req.method == Method::GET;
    match segments.as_slice() {
        ["version"] if get => return Ok(json_response(200, &version())),
        ["healthz" | "readyz" | "livez"] if get => {
            return Ok(Response::new(Body::from("ok")));
        }
        ["api"] if get => {
            return Ok(json_response(
                200,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
                }),
            ));
        }
        ["apis"] if get => {
            return Ok(json_response(
                200,
                &store.with_registry(|r| r.api_group_list()),
            ));
        }
        ["api", version] if get => {
            return store
                .with_registry(|r| r.api_resource_list("", version))
                .map(|list| json_response(200, &list))
                .ok_or_else(ApiError::no_such_resource);
        }
        ["apis", group] if get => {
            return store
                .with_registry(|r| r.api_group(group))
                .map(|g| json_response(200, &g))
                .ok_or_else(ApiError::no_such_resource);
        }
        ["apis", group, version] if get => {
            return store
                .with_registry(|r| r.api_resource_list(group, version))
                .map(|list| json_response(200, &list))
                .ok_or_else(ApiError::no_such_resource);
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (group, version, rest),
        _ => return Err(ApiError::no_such_resource()),
    };
    let target = resolve(store, group, version, rest)?;
    match (target.name.as_deref(), target.sub) {
        (None, _) => collection(app, &req, &target).await,
        (Some(name), sub) => item(store, &req, &target, name, sub),
    }
}

fn resolve(
    store: &ObjectStore,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && store
            .resource(group, version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (namespace, tail) = if namespaced_path {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    let res = store
        .resource(group, version, tail[0])
        .ok_or_else(ApiError::no_such_resource)?;
    let name = tail.get(1).map(|n| (*n).to_owned());
    let sub = match tail.get(2) {
        None => Subresource::Main,
        Some(&"status") if res.status_subresource && tail.len() == 3 => Subresource::Status,
        Some(_) => return Err(ApiError::no_such_resource()),
    };
    if (res.namespaced && namespace.is_none() && name.is_some())
        || (!res.namespaced && namespace.is_some())
    {
        return Err(ApiError::no_such_resource());
    }
    Ok(Target {
        res,
        namespace,
        name,
        sub,
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-quire-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn filter(req: &Request, target: &Target) -> Result<WatchFilter, ApiError> {
    let labels = LabelSelector::parse(req.param("labelSelector").unwrap_or_default())?;
    let any_field = target.res.plural == "events";
    let fields = FieldSelector::parse(req.param("fieldSelector").unwrap_or_default(), any_field)?;
    Ok(WatchFilter {
        res: target.res.clone(),
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

async fn collection(
    app: &Arc<AppState>,
    req: &Request,
    target: &Target,
) -> Result<Response, ApiError> {
    let store = &app.store;
    let res = &target.res;
    match req.method {
        Method::GET if req.flag("watch") => watch(app, req, target).await,
        Method::GET => {
            let filter = filter(req, target)?;
            let limit =
                match req.param("limit") {
                    Some(l) => Some(l.parse::<usize>().map_err(|_| {
                        ApiError::bad_request(format!("limit: Invalid value: {l:?}"))
                    })?),
                    None => None,
                };
            let page = store.list(&filter, limit, req.param("continue"))?;
            let items: Vec<Value> = page.items.iter().map(|o| (**o).clone()).collect();
            if table::wants_table(&req.accept) {
                return Ok(json_response(
                    200,
                    &table::table(
                        res,
                        &items,
                        IncludeObject::parse(req.param("includeObject")),
                        Some(page.resource_version.to_string()),
                        page.continue_token,
                    ),
                ));
            }
            let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(token) = page.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = page.remaining {
                metadata["remainingItemCount"] = json!(remaining);
            }
            Ok(json_response(
                200,
                &json!({
                    "apiVersion": res.api_version(),
                    "kind": format!("{}List", res.kind),
                    "metadata": metadata,
                    "items": items,
                }),
            ))
        }
        Method::POST => {
            if res.namespaced && target.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let body = req.json_body()?;
            let created = store.create(res, target.namespace.as_deref(), body, req.dry_run())?;
            Ok(json_response(201, &created))
        }
        Method::DELETE => {
            let filter = filter(req, target)?;
            let page = store.list(&filter, None, None)?;
            let preconditions = Preconditions::default();
            let mut deleted = Vec::new();
            for obj in page.items {
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let namespace = obj["metadata"]["namespace"].as_str().map(str::to_owned);
                match store.delete(
                    res,
                    namespace.as_deref(),
                    &name,
                    &preconditions,
                    req.dry_run(),
                ) {
                    Ok(result) if result["kind"] == "Status" => deleted.push((*obj).clone()),
                    Ok(result) => deleted.push(result),
                    Err(err) if err.code == 404 => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(json_response(
                200,
                &json!({
                    "apiVersion": res.api_version(),
                    "kind": format!("{}List", res.kind),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": deleted,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn item(
    store: &ObjectStore,
    req: &Request,
    target: &Target,
    name: &str,
    sub: Subresource,
) -> Result<Response, ApiError> {
    let res = &target.res;
    let namespace = target.namespace.as_deref();
    match req.method {
        Method::GET => {
            let obj = store.get(res, namespace, name)?;
            if table::wants_table(&req.accept) {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                return Ok(json_response(
                    200,
                    &table::table(
                        res,
                        &[obj],
                        IncludeObject::parse(req.param("includeObject")),
                        rv,
                        None,
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        Method::PUT => {
            let body = req.json_body()?;
            let updated = store.update(res, namespace, name, sub, body, req.dry_run())?;
            Ok(json_response(200, &updated))
        }
        Method::PATCH => {
            let kind = PatchKind::from_content_type(&req.content_type, res.custom)?;
            let patch_body = patch::parse_body(kind, &req.body)?;
            let (obj, created) = store.patch(
                res,
                namespace,
                name,
                sub,
                kind,
                &patch_body,
                req.param("fieldManager"),
                req.dry_run(),
            )?;
            Ok(json_response(if created { 201 } else { 200 }, &obj))
        }
        Method::DELETE if sub == Subresource::Main => {
            let options: Value = if req.body.is_empty() {
                json!({})
            } else {
                req.json_body()?
            };
            let preconditions = Preconditions {
                uid: options
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                resource_version: options
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            let dry_run = req.dry_run()
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            let result = store.delete(res, namespace, name, &preconditions, dry_run)?;
            Ok(json_response(200, &result))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A watch: initial events as asked, then every later change, as newline-delimited JSON.
async fn watch(app: &Arc<AppState>, req: &Request, target: &Target) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let filter = filter(req, target)?;
    let send_initial = req.flag("sendInitialEvents");
    let bookmarks = req.flag("allowWatchBookmarks");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid_options(
            "ListOptions",
            "allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is set",
        ));
    }
    let start_rv = match req.param("resourceVersion") {
        None | Some("0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {rv:?}"))
        })?),
    };
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let as_table =
        table::wants_table(&req.accept).then(|| IncludeObject::parse(req.param("includeObject")));
    let bookmark_interval = *lock(&app.bookmark_interval);
    let res = target.res.clone();

    let (mut rv_rx, mut epoch_rx) = store.subscribe();
    let mut closed_rx = app.closed_tx.subscribe();
    rv_rx.borrow_and_update();
    epoch_rx.borrow_and_update();
    closed_rx.borrow_and_update();
    let (initial, mut cursor, start_error) = if send_initial || start_rv.is_none() {
        let (objects, rv) = store.watch_snapshot(&filter);
        (objects, rv, None)
    } else {
        let rv = start_rv.unwrap_or_default();
        (Vec::new(), rv, store.check_watch_start(rv).err())
    };

    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let line = |type_: &str, object: Value| {
            let mut bytes = serde_json::to_vec(&json!({"type": type_, "object": object}))
                .expect("a watch event serializes");
            bytes.push(b'\n');
            Bytes::from(bytes)
        };
        let render = |object: &Value| match as_table {
            Some(include) => table::table(&res, std::slice::from_ref(object), include, None, None),
            None => object.clone(),
        };
        let bookmark = |rv: u64, initial_end: bool| {
            let mut metadata =
                json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
            if initial_end {
                metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata})
        };
        if let Some(err) = start_error {
            let _ = tx.send(line("ERROR", err.to_status())).await;
            return;
        }
        for object in initial {
            if tx.send(line("ADDED", render(&object))).await.is_err() {
                return;
            }
        }
        if send_initial
            && tx
                .send(line("BOOKMARK", bookmark(cursor, true)))
                .await
                .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(bookmark_interval.max(Duration::from_millis(10)));
        ticker.tick().await;
        loop {
            rv_rx.borrow_and_update();
            match store.events_after(&filter, cursor) {
                Err(err) => {
                    let _ = tx.send(line("ERROR", err.to_status())).await;
                    return;
                }
                Ok((events, upto)) => {
                    for (type_, object) in events {
                        if tx
                            .send(line(type_.as_str(), render(&object)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    cursor = upto;
                }
            }
            tokio::select! {
                changed = rv_rx.changed() => if changed.is_err() { return },
                _ = epoch_rx.changed() => return,
                _ = closed_rx.changed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(line("BOOKMARK", bookmark(cursor, false))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>)));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a streaming response builds"))
}
