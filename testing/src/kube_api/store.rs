//! The cluster state: objects keyed like etcd, one global `resourceVersion`, a bounded event
//! history watches read from, and the write rules of the apiserver (optimistic concurrency,
//! generation, status subresource, finalizers, CRD validation).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{SecondsFormat, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::errors::{ApiError, FieldError};
use super::patch::{self, PatchKind};
use super::resources::{Registry, ResourceInfo};
use super::schema;
use super::selector::{FieldSelector, LabelSelector};

/// How many watch events are kept by default; a watch from an older `resourceVersion` gets
/// `410 Gone`.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// (group, plural, namespace or "", name): objects are stored per group and plural, like
/// etcd keys, so every served version sees the same objects.
type Key = (String, String, String, String);

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
struct HistoryEvent {
    rv: u64,
    type_: EventType,
    group: String,
    plural: String,
    namespace: String,
    object: Arc<Value>,
    /// The object before a modification, to turn selector transitions into ADDED/DELETED.
    previous: Option<Arc<Value>>,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<HistoryEvent>,
    history_limit: usize,
    /// Every event with a `resourceVersion` at or below this one was dropped.
    compacted_rv: u64,
    registry: Registry,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The latest `resourceVersion`, for watches to wait on.
    rv_tx: watch::Sender<u64>,
    /// Bumped to end every open watch stream (an apiserver restart, as clients see it).
    epoch_tx: watch::Sender<u64>,
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subresource {
    Main,
    Status,
}

/// `DeleteOptions.preconditions`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// What a watch wants to see.
#[derive(Clone, Debug)]
pub(crate) struct WatchFilter {
    pub res: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl WatchFilter {
    fn matches_location(&self, group: &str, plural: &str, namespace: &str) -> bool {
        group == self.res.group
            && plural == self.res.plural
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// A change as one watch sees it.
pub(crate) type WatchedChange = (EventType, Arc<Value>);

/// One page of a list.
pub(crate) struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// The objects of a fake cluster. Cheap to clone (shared); outlives any server started on
/// it, so a test can stop a server and start another on the same state.
#[derive(Clone)]
pub struct ObjectStore {
    shared: Arc<Shared>,
}

impl Default for ObjectStore {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// The object minus `metadata` and `status`: what a custom resource's generation tracks.
fn generation_relevant(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

fn valid_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    namespace: String,
    name: String,
}

impl ObjectStore {
    /// A store serving the built-in resources, with namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn new() -> Self {
        let (rv_tx, _) = watch::channel(0);
        let (epoch_tx, _) = watch::channel(0);
        let store = Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    rv: 0,
                    objects: BTreeMap::new(),
                    history: VecDeque::new(),
                    history_limit: DEFAULT_HISTORY_LIMIT,
                    compacted_rv: 0,
                    registry: Registry::new(),
                }),
                rv_tx,
                epoch_tx,
            }),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create_object(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .expect("a built-in namespace can be created in an empty store");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ----- test hooks -----

    /// Installs a CRD (as `kubectl apply -f crd.yaml` would): its resources are served from now on.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) -> Result<Value, ApiError> {
        let value = serde_json::to_value(crd)
            .map_err(|e| ApiError::bad_request(format!("CRD does not serialize: {e}")))?;
        let name = meta_str(&value, "name").unwrap_or_default().to_owned();
        let res = self
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are a built-in resource");
        match self.get(&res, None, &name) {
            Ok(existing) => {
                let mut replacement = value;
                metadata_mut(&mut replacement).insert(
                    "resourceVersion".to_owned(),
                    existing["metadata"]["resourceVersion"].clone(),
                );
                self.update(&res, None, &name, Subresource::Main, replacement, false)
            }
            Err(_) => self.create(&res, None, value, false),
        }
    }

    /// Creates an object through the API's create path (validation included); its
    /// resource comes from `apiVersion` and `kind`.
    pub fn create_object(&self, obj: Value) -> Result<Value, ApiError> {
        let res = self.resource_for(&obj)?;
        let namespace = meta_str(&obj, "namespace").map(str::to_owned);
        let namespace = res
            .namespaced
            .then(|| namespace.unwrap_or_else(|| "default".to_owned()));
        self.create(&res, namespace.as_deref(), obj, false)
    }

    /// The stored object, if any (`group` is `""` for the core group).
    pub fn get_value(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = (
            group.to_owned(),
            plural.to_owned(),
            namespace.unwrap_or_default().to_owned(),
            name.to_owned(),
        );
        self.lock().objects.get(&key).map(|o| (**o).clone())
    }

    /// The stored object as a typed resource.
    pub fn get_typed<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let value = self.get_value(&K::group(&()), &K::plural(&()), namespace, name)?;
        serde_json::from_value(value).ok()
    }

    /// Stored objects of one resource, in one namespace or all (`None`), in key order.
    pub fn list_values(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((g, p, ns, _), _)| {
                g == group && p == plural && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, o)| (**o).clone())
            .collect()
    }

    /// Stored objects of one resource as typed resources.
    pub fn list_typed<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list_values(&K::group(&()), &K::plural(&()), namespace)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Every stored object.
    pub fn all_objects(&self) -> Vec<Value> {
        self.lock()
            .objects
            .values()
            .map(|o| (**o).clone())
            .collect()
    }

    /// Changes a stored object in place, bypassing validation and the status-subresource
    /// rules (as another component of the cluster could): bumps its `resourceVersion` and
    /// emits MODIFIED, or DELETED when the change leaves a deleting object without
    /// finalizers.
    pub fn modify_value(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut inner = self.lock();
        let res = inner.registry.find_any_version(group, plural)?;
        let key = (
            group.to_owned(),
            plural.to_owned(),
            namespace.unwrap_or_default().to_owned(),
            name.to_owned(),
        );
        let old = inner.objects.get(&key)?.clone();
        let mut new = (*old).clone();
        change(&mut new);
        let committed = self.commit(&mut inner, &res, key, Some(old), new);
        Some(committed)
    }

    /// Removes an object at once, finalizers or not, emitting DELETED.
    pub fn remove_value(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut inner = self.lock();
        let key = (
            group.to_owned(),
            plural.to_owned(),
            namespace.unwrap_or_default().to_owned(),
            name.to_owned(),
        );
        let old = inner.objects.remove(&key)?;
        let mut gone = (*old).clone();
        Some(self.record_deletion(&mut inner, key, old, &mut gone))
    }

    /// The latest `resourceVersion` handed out.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Forgets every watch event so far: a watch or continue token from before now gets
    /// `410 Gone` (as after etcd compaction).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted_rv = inner.rv;
    }

    /// Keeps at most `limit` watch events (older ones are compacted).
    pub fn set_history_limit(&self, limit: usize) {
        let mut inner = self.lock();
        inner.history_limit = limit;
        Self::trim_history(&mut inner);
    }

    /// Ends every open watch stream, as an apiserver restart does; clients re-watch.
    pub fn close_watches(&self) {
        self.shared.epoch_tx.send_modify(|epoch| *epoch += 1);
    }

    // ----- resources -----

    pub(crate) fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceInfo>> {
        self.lock().registry.find(group, version, plural)
    }

    pub(crate) fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.lock().registry)
    }

    fn resource_for(&self, obj: &Value) -> Result<Arc<ResourceInfo>, ApiError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let inner = self.lock();
        let found = inner.registry.find_kind(group, version, kind);
        found.ok_or_else(|| {
            ApiError::bad_request(format!("no resource serves {api_version} {kind}"))
        })
    }

    // ----- watch plumbing -----

    pub(crate) fn subscribe(&self) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        (
            self.shared.rv_tx.subscribe(),
            self.shared.epoch_tx.subscribe(),
        )
    }

    /// The objects a watch starting "now" reports as ADDED, and the `resourceVersion` it
    /// then continues after.
    pub(crate) fn watch_snapshot(&self, filter: &WatchFilter) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let objects = inner
            .objects
            .iter()
            .filter(|((g, p, ns, _), o)| filter.matches_location(g, p, ns) && filter.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        (objects, inner.rv)
    }

    /// Checks that a watch can start after `rv`.
    pub(crate) fn check_watch_start(&self, rv: u64) -> Result<(), ApiError> {
        let inner = self.lock();
        if rv < inner.compacted_rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                inner.compacted_rv + 1
            )));
        }
        Ok(())
    }

    /// Events after `cursor` the filter sees, and the `resourceVersion` they run up to.
    pub(crate) fn events_after(
        &self,
        filter: &WatchFilter,
        cursor: u64,
    ) -> Result<(Vec<WatchedChange>, u64), ApiError> {
        let inner = self.lock();
        if cursor < inner.compacted_rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {cursor} ({})",
                inner.compacted_rv + 1
            )));
        }
        let start = inner.history.partition_point(|e| e.rv <= cursor);
        let mut events = Vec::new();
        for e in inner.history.iter().skip(start) {
            if !filter.matches_location(&e.group, &e.plural, &e.namespace) {
                continue;
            }
            let now_matches = filter.matches(&e.object);
            let before_matches = e.previous.as_ref().is_some_and(|p| filter.matches(p));
            let type_ = match e.type_ {
                EventType::Added if now_matches => EventType::Added,
                EventType::Deleted if now_matches || before_matches => EventType::Deleted,
                EventType::Modified => match (before_matches, now_matches) {
                    (true, true) => EventType::Modified,
                    (true, false) => EventType::Deleted,
                    (false, true) => EventType::Added,
                    (false, false) => continue,
                },
                _ => continue,
            };
            events.push((type_, e.object.clone()));
        }
        Ok((events, inner.rv))
    }

    // ----- reads -----

    pub(crate) fn get(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = key(res, namespace, name);
        self.lock()
            .objects
            .get(&key)
            .map(|o| (**o).clone())
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub(crate) fn list(
        &self,
        filter: &WatchFilter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let inner = self.lock();
        let (list_rv, after) = match continue_token {
            Some(token) => {
                let bad = || ApiError::bad_request("continue key is not valid");
                let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
                let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
                if token.rv < inner.compacted_rv {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
                    ));
                }
                (token.rv, Some((token.namespace, token.name)))
            }
            None => (inner.rv, None),
        };
        let matching: Vec<(&Key, &Arc<Value>)> = inner
            .objects
            .iter()
            .filter(|((g, p, ns, _), _)| filter.matches_location(g, p, ns))
            .filter(|((_, _, ns, name), _)| {
                after
                    .as_ref()
                    .is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
            })
            .filter(|(_, o)| filter.matches(o))
            .collect();
        let page_len = limit
            .filter(|l| *l > 0)
            .map_or(matching.len(), |l| l.min(matching.len()));
        let items: Vec<Arc<Value>> = matching[..page_len]
            .iter()
            .map(|(_, o)| (*o).clone())
            .collect();
        let last_key = matching[..page_len].last().map(|(k, _)| (*k).clone());
        let remaining = (page_len < matching.len()).then(|| matching.len() - page_len);
        let continue_token = match (&remaining, &last_key) {
            (Some(_), Some((_, _, ns, name))) => {
                let token = ContinueToken {
                    rv: list_rv,
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                Some(
                    URL_SAFE_NO_PAD
                        .encode(serde_json::to_vec(&token).expect("a continue token serializes")),
                )
            }
            _ => None,
        };
        Ok(ListPage {
            items,
            resource_version: list_rv,
            continue_token,
            remaining,
        })
    }

    // ----- writes -----

    pub(crate) fn create(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type(res, &obj, "")?;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let meta = metadata_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for system in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
            "resourceVersion",
        ] {
            meta.remove(system);
        }
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".to_owned(), json!(name));
                    name
                }
                _ => {
                    return Err(ApiError::invalid(
                        res,
                        "",
                        &[FieldError::required_because(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            },
        };
        if let Some(ns) = namespace {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".to_owned(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        if !valid_subdomain(&name) {
            return Err(ApiError::invalid(
                res,
                &name,
                &[FieldError::invalid(
                    "metadata.name",
                    &json!(name),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )],
            ));
        }
        if res.status_subresource
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        if res.group.is_empty() && res.plural == "namespaces" {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
            crd_established(&mut obj);
        }
        validate(res, &mut obj, None, &name)?;

        let mut inner = self.lock();
        if let Some(ns) = namespace
            && !inner.objects.contains_key(&(
                String::new(),
                "namespaces".to_owned(),
                String::new(),
                ns.to_owned(),
            ))
        {
            return Err(ApiError::namespace_not_found(ns));
        }
        let key = key(res, namespace, &name);
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(res, &name));
        }
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".to_owned(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".to_owned(), json!(now()));
        if res.custom {
            meta.insert("generation".to_owned(), json!(1));
        }
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(&mut inner, res, key, None, obj))
    }

    pub(crate) fn update(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        sub: Subresource,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type(res, &body, name)?;
        check_name(&body, name, namespace)?;
        let body_rv = meta_str(&body, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(str::to_owned);
        if body_rv.is_none() && res.custom {
            return Err(ApiError::invalid(
                res,
                name,
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        let mut inner = self.lock();
        let key = key(res, namespace, name);
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        if let Some(rv) = &body_rv
            && meta_str(&old, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::modified(res, name));
        }
        let new = prepare_update(res, &old, body, sub, name)?;
        if dry_run {
            return Ok(new);
        }
        Ok(self.commit(&mut inner, res, key, Some(old), new))
    }

    /// Applies a patch; answers the result and whether it created the object (apply only).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        sub: Subresource,
        kind: PatchKind,
        patch_body: &Value,
        field_manager: Option<&str>,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        if kind == PatchKind::Apply {
            if field_manager.is_none_or(str::is_empty) {
                return Err(ApiError::invalid_options(
                    "PatchOptions",
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
            if patch_body
                .get("kind")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "error decoding patch: Object 'Kind' is missing in '{patch_body}'"
                )));
            }
            check_type(res, patch_body, name)?;
            // An applied configuration may leave the name to the URL.
            if meta_str(patch_body, "name").is_some_and(|n| !n.is_empty()) {
                check_name(patch_body, name, namespace)?;
            }
        }
        let mut inner = self.lock();
        let key = key(res, namespace, name);
        let Some(old) = inner.objects.get(&key).cloned() else {
            if kind == PatchKind::Apply && sub == Subresource::Main {
                drop(inner);
                let mut obj = patch_body.clone();
                metadata_mut(&mut obj).insert("name".to_owned(), json!(name));
                let created = self.create(res, namespace, obj, dry_run)?;
                return Ok((created, true));
            }
            return Err(ApiError::not_found(res, name));
        };
        let patched = patch::apply(kind, &old, patch_body)?;
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(res, name));
        }
        check_name(&patched, name, namespace)?;
        let new = prepare_update(res, &old, patched, sub, name)?;
        if dry_run {
            return Ok((new, false));
        }
        Ok((self.commit(&mut inner, res, key, Some(old), new), false))
    }

    /// Deletes an object: at once without finalizers (answering a success `Status`), or by
    /// setting `deletionTimestamp` (answering the object).
    pub(crate) fn delete(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        preconditions: &Preconditions,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = key(res, namespace, name);
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let uid = meta_str(&old, "uid").unwrap_or_default().to_owned();
        if let Some(expected) = &preconditions.uid
            && *expected != uid
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {expected}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = meta_str(&old, "resourceVersion").unwrap_or_default();
        if let Some(expected) = &preconditions.resource_version
            && expected != rv
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok((*old).clone());
            }
            let mut new = (*old).clone();
            let meta = metadata_mut(&mut new);
            meta.insert("deletionTimestamp".to_owned(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            if let Some(generation) = meta.get("generation").and_then(Value::as_i64)
                && generation > 0
            {
                meta.insert("generation".to_owned(), json!(generation + 1));
            }
            if dry_run {
                return Ok(new);
            }
            return Ok(self.commit(&mut inner, res, key, Some(old), new));
        }
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": res.group, "kind": res.plural, "uid": uid},
        });
        if dry_run {
            return Ok(status);
        }
        inner.objects.remove(&key);
        let mut gone = (*old).clone();
        self.record_deletion(&mut inner, key, old, &mut gone);
        if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
            register_crd_object(&mut inner.registry, &gone, true);
        }
        Ok(status)
    }

    /// Stores `new` (or deletes it, when it is a deleting object without finalizers) and
    /// records the event. A write that changes nothing is a no-op without an event.
    fn commit(
        &self,
        inner: &mut Inner,
        res: &ResourceInfo,
        key: Key,
        old: Option<Arc<Value>>,
        mut new: Value,
    ) -> Value {
        if let Some(old) = &old {
            if **old == new {
                return new;
            }
            if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
                inner.objects.remove(&key);
                let old = old.clone();
                let gone = self.record_deletion(inner, key, old, &mut new);
                if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions"
                {
                    register_crd_object(&mut inner.registry, &gone, true);
                }
                return gone;
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        metadata_mut(&mut new).insert("resourceVersion".to_owned(), json!(rv.to_string()));
        let object = Arc::new(new);
        inner.objects.insert(key.clone(), object.clone());
        let type_ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
            register_crd_object(&mut inner.registry, &object, false);
        }
        self.record(inner, type_, key, object.clone(), old);
        (*object).clone()
    }

    /// Records the deletion of an already removed object; `gone` gets the deletion's
    /// `resourceVersion` and is returned.
    fn record_deletion(
        &self,
        inner: &mut Inner,
        key: Key,
        old: Arc<Value>,
        gone: &mut Value,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        metadata_mut(gone).insert("resourceVersion".to_owned(), json!(rv.to_string()));
        let object = Arc::new(gone.clone());
        self.record(inner, EventType::Deleted, key, object, Some(old));
        gone.clone()
    }

    fn record(
        &self,
        inner: &mut Inner,
        type_: EventType,
        key: Key,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let (group, plural, namespace, _) = key;
        inner.history.push_back(HistoryEvent {
            rv: inner.rv,
            type_,
            group,
            plural,
            namespace,
            object,
            previous,
        });
        Self::trim_history(inner);
        self.shared.rv_tx.send_replace(inner.rv);
    }

    fn trim_history(inner: &mut Inner) {
        while inner.history.len() > inner.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted_rv = inner.compacted_rv.max(dropped.rv);
            }
        }
    }
}

fn key(res: &ResourceInfo, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if res.namespaced {
        namespace.unwrap_or_default()
    } else {
        ""
    };
    (
        res.group.clone(),
        res.plural.clone(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

/// `apiVersion` must be the URL's (400); `kind` must be the resource's (422), when given.
fn check_type(res: &ResourceInfo, obj: &Value, name: &str) -> Result<(), ApiError> {
    if let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str)
        && !api_version.is_empty()
        && api_version != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != res.kind
    {
        return Err(ApiError::invalid(
            res,
            name,
            &[FieldError::invalid(
                "kind",
                &json!(kind),
                &format!("must be {}", res.kind),
            )],
        ));
    }
    Ok(())
}

/// The body's name and namespace must be the URL's (400 BadRequest, as the apiserver).
fn check_name(obj: &Value, name: &str, namespace: Option<&str>) -> Result<(), ApiError> {
    let body_name = meta_str(obj, "name").unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(ns), Some(body_ns)) = (namespace, meta_str(obj, "namespace"))
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Turns a requested new state into what the apiserver stores: system metadata kept,
/// status or everything-but-status taken from the old object, finalizer rule, schema
/// validation, generation.
fn prepare_update(
    res: &ResourceInfo,
    old: &Value,
    requested: Value,
    sub: Subresource,
    name: &str,
) -> Result<Value, ApiError> {
    let mut new = match sub {
        Subresource::Status => {
            let mut new = old.clone();
            match requested.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            new
        }
        Subresource::Main => {
            let mut new = requested;
            if res.status_subresource {
                let map = new.as_object_mut().expect("the body is an object");
                match old.get("status") {
                    Some(status) => {
                        map.insert("status".to_owned(), status.clone());
                    }
                    None => {
                        map.remove("status");
                    }
                }
            }
            let old_meta = old.get("metadata").and_then(Value::as_object);
            let meta = metadata_mut(&mut new);
            for system in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
                "resourceVersion",
            ] {
                match old_meta.and_then(|m| m.get(system)) {
                    Some(v) => meta.insert(system.to_owned(), v.clone()),
                    None => meta.remove(system),
                };
            }
            meta.remove("managedFields");
            meta.remove("selfLink");
            new
        }
    };
    new["apiVersion"] = json!(res.api_version());
    new["kind"] = json!(res.kind);
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            return Err(ApiError::invalid(
                res,
                name,
                &[FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        quoted.join(", ")
                    ),
                )],
            ));
        }
    }
    validate(res, &mut new, Some(old), name)?;
    if res.custom && generation_relevant(&new) != generation_relevant(old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut new).insert("generation".to_owned(), json!(generation + 1));
    }
    Ok(new)
}

/// Prunes, defaults and validates a custom resource against its schema.
fn validate(
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(schema) = &res.schema else {
        return Ok(());
    };
    schema::prune_and_default(schema, obj);
    let errors = schema::validate(schema, obj, old);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, &errors))
    }
}

/// Marks a new CRD `Established`, as the apiextensions controllers would at once.
fn crd_established(obj: &mut Value) {
    let names = obj
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let time = now();
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
        ],
        "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten()
            .filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
            .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>(),
    });
}

/// Serves (or stops serving) the resources of a stored CRD object.
fn register_crd_object(registry: &mut Registry, obj: &Value, deleted: bool) {
    let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(obj.clone()) else {
        return;
    };
    let infos = if deleted {
        Vec::new()
    } else {
        ResourceInfo::from_crd(&crd)
    };
    registry.set_crd(&crd.spec.group, &crd.spec.names.plural, infos);
}
