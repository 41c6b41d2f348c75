//! Which resources the fake serves: a few built-ins (namespaces, events, leases, CRDs) and
//! every registered custom resource, with what discovery says about them.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// One additional printer column of a CRD version.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

/// A served resource (one group/version/plural).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceInfo {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served with a `/status` subresource whose writes only change `.status`.
    pub status_subresource: bool,
    /// Backed by a CRD: generation tracking, schema validation, no strategic merge patch.
    pub custom: bool,
    /// The CRD version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The CRD version's additional printer columns (empty: `Name` and `Age`).
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceInfo {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `reportrequests.quire.dev` (or `namespaces` for the core group), as error messages say it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_lowercase(),
            kind: kind.to_owned(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            custom: false,
            schema: None,
            printer_columns: Vec::new(),
        }
    }

    /// The resources every fake serves besides the registered CRDs.
    pub(crate) fn builtins() -> Vec<Self> {
        let mut namespaces = Self::builtin("", "v1", "namespaces", "Namespace", false);
        namespaces.short_names = vec!["ns".to_owned()];
        namespaces.status_subresource = true;
        let mut core_events = Self::builtin("", "v1", "events", "Event", true);
        core_events.short_names = vec!["ev".to_owned()];
        let mut events = Self::builtin("events.k8s.io", "v1", "events", "Event", true);
        events.short_names = vec!["ev".to_owned()];
        let leases = Self::builtin("coordination.k8s.io", "v1", "leases", "Lease", true);
        let mut crds = Self::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        );
        crds.short_names = vec!["crd".to_owned(), "crds".to_owned()];
        crds.status_subresource = true;
        vec![namespaces, core_events, events, leases, crds]
    }

    /// One `ResourceInfo` per served version of a CRD.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Vec<Self> {
        let spec = &crd.spec;
        spec.versions
            .iter()
            .filter(|v| v.served)
            .map(|v| Self {
                group: spec.group.clone(),
                version: v.name.clone(),
                plural: spec.names.plural.clone(),
                singular: spec
                    .names
                    .singular
                    .clone()
                    .unwrap_or_else(|| spec.names.kind.to_lowercase()),
                kind: spec.names.kind.clone(),
                namespaced: spec.scope == "Namespaced",
                short_names: spec.names.short_names.clone().unwrap_or_default(),
                categories: spec.names.categories.clone().unwrap_or_default(),
                status_subresource: v
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                custom: true,
                schema: v
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok()),
                printer_columns: v
                    .additional_printer_columns
                    .iter()
                    .flatten()
                    .map(|c| PrinterColumn {
                        name: c.name.clone(),
                        type_: c.type_.clone(),
                        format: c.format.clone().unwrap_or_default(),
                        description: c.description.clone().unwrap_or_default(),
                        priority: c.priority.unwrap_or(0),
                        json_path: c.json_path.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    fn verbs(&self) -> Value {
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    }
}

/// The set of served resources; CRDs come and go as CRD objects are written.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            resources: ResourceInfo::builtins().into_iter().map(Arc::new).collect(),
        }
    }

    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The resource serving objects of `kind` in a group version.
    pub(crate) fn find_kind(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// The resource for (group, plural) whatever its version: objects are stored per group
    /// and plural, like etcd keys.
    pub(crate) fn find_any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
    }

    /// Replaces whatever the CRD named `crd_name` registered before with `infos`.
    pub(crate) fn set_crd(&mut self, group: &str, plural: &str, infos: Vec<ResourceInfo>) {
        self.resources
            .retain(|r| !(r.custom && r.group == group && r.plural == plural));
        self.resources.extend(infos.into_iter().map(Arc::new));
    }

    /// Group versions in discovery order: core first, then groups by name.
    fn group_versions(&self) -> Vec<(String, String)> {
        let mut gvs: Vec<(String, String)> = Vec::new();
        for r in &self.resources {
            let gv = (r.group.clone(), r.version.clone());
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
        gvs
    }

    /// `GET /apis`: an `APIGroupList`.
    pub(crate) fn api_group_list(&self) -> Value {
        let mut groups: Vec<String> = Vec::new();
        for (g, _) in self.group_versions() {
            if !g.is_empty() && !groups.contains(&g) {
                groups.push(g);
            }
        }
        let groups: Vec<Value> = groups.iter().filter_map(|g| self.api_group(g)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/{group}`: an `APIGroup`.
    pub(crate) fn api_group(&self, group: &str) -> Option<Value> {
        let versions: Vec<Value> = self
            .group_versions()
            .into_iter()
            .filter(|(g, _)| g == group)
            .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
            .collect();
        let preferred = versions.first()?.clone();
        Some(json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions,
            "preferredVersion": preferred,
        }))
    }

    /// `GET /api/v1` or `/apis/{group}/{version}`: an `APIResourceList`.
    pub(crate) fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for r in self
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            let mut entry = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs(),
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            resources.push(entry);
            if r.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", r.plural),
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }
}
