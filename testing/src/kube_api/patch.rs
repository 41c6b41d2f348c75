//! The four PATCH content types, applied to a stored object.

use serde_json::Value;

use super::errors::ApiError;

/// A PATCH body's kind, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`: merge-patch semantics here (no patch
    /// strategies per list); refused for custom resources like the real apiserver does.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

const CUSTOM_ACCEPTED: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
const BUILTIN_ACCEPTED: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    pub(crate) fn from_content_type(content_type: &str, custom: bool) -> Result<Self, ApiError> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let accepted = if custom {
            CUSTOM_ACCEPTED
        } else {
            BUILTIN_ACCEPTED
        };
        match media.as_str() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" if !custom => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(accepted)),
        }
    }
}

/// Parses a patch body: JSON for the JSON kinds, YAML (a superset) for apply.
pub(crate) fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = match kind {
        PatchKind::Apply => serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a parsed patch to `base` and returns the patched object.
pub(crate) fn apply(kind: PatchKind, base: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = base.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut doc, &strip_directives(patch));
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            for op in &ops.0 {
                // Like the apiserver's JSON patch library, `test` with `null` passes on a
                // missing path (kube-runtime's finalizer helper relies on it).
                if let json_patch::PatchOperation::Test(test) = op
                    && test.value.is_null()
                    && doc.pointer(test.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(op))
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
            }
        }
        PatchKind::Apply => apply_merge(&mut doc, patch),
    }
    Ok(doc)
}

/// Drops strategic-merge directives (`$patch`, `$retainKeys`, `$setElementOrder/…`,
/// `$deleteFromPrimitiveList/…`) so they never land in an object.
fn strip_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Server-side apply without field ownership: maps merge recursively, everything else
/// (scalars, lists) is replaced by the applied value; `null` removes a field.
fn apply_merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                if value.is_null() {
                    target.remove(key);
                } else if let Some(existing) = target.get_mut(key)
                    && existing.is_object()
                    && value.is_object()
                {
                    apply_merge(existing, value);
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types_map_to_kinds_and_custom_resources_refuse_strategic() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8", true),
            Ok(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json", false),
            Ok(PatchKind::Strategic)
        );
        let err = PatchKind::from_content_type("application/strategic-merge-patch+json", true)
            .unwrap_err();
        assert_eq!(err.code, 415);
        assert_eq!(
            PatchKind::from_content_type("text/plain", false)
                .unwrap_err()
                .code,
            415
        );
    }

    #[test]
    fn json_patch_test_failures_are_invalid() {
        let base = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "b"},
                           {"op": "remove", "path": "/metadata/finalizers/0"}]);
        assert_eq!(apply(PatchKind::Json, &base, &patch).unwrap_err().code, 422);
        let patch = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
                           {"op": "remove", "path": "/metadata/finalizers/0"}]);
        assert_eq!(
            apply(PatchKind::Json, &base, &patch).unwrap(),
            json!({"metadata": {"finalizers": []}})
        );
    }

    #[test]
    fn a_null_test_passes_on_a_missing_path() {
        let base = json!({"metadata": {"name": "a"}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                           {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]);
        assert_eq!(
            apply(PatchKind::Json, &base, &patch).unwrap(),
            json!({"metadata": {"name": "a", "finalizers": ["f"]}})
        );
    }

    #[test]
    fn apply_merges_maps_and_replaces_lists() {
        let base = json!({"spec": {"a": 1, "b": [1, 2]}, "status": {"x": 1}});
        let patch = json!({"spec": {"b": [3], "c": true}});
        assert_eq!(
            apply(PatchKind::Apply, &base, &patch).unwrap(),
            json!({"spec": {"a": 1, "b": [3], "c": true}, "status": {"x": 1}})
        );
    }
}
