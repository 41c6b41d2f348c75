//! The part of a CRD's structural schema the apiserver enforces on every write: pruning of
//! unknown fields, defaulting, type/required/enum/pattern/range checks, and the CEL
//! transition rule `self == oldSelf` (immutability). Other CEL rules are not evaluated.

use serde_json::{Map, Value};

use super::errors::FieldError;

/// Prunes unknown fields and nulls of non-nullable fields, then applies defaults, as the
/// apiserver does before validation. `obj` is the whole object; its schema is the root.
pub(crate) fn prune_and_default(schema: &Value, obj: &mut Value) {
    prepare(schema, obj, true);
}

fn prepare(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(properties) = properties {
                map.retain(|key, v| {
                    if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        return true;
                    }
                    match properties.get(key) {
                        Some(prop) => !v.is_null() || nullable(prop),
                        None => preserve || additional.is_some(),
                    }
                });
                for (key, prop) in properties {
                    if !map.contains_key(key)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                }
                for (key, v) in map.iter_mut() {
                    if root && key == "metadata" {
                        continue;
                    }
                    if let Some(prop) = properties.get(key) {
                        prepare(prop, v, false);
                    } else if let Some(additional) = additional {
                        prepare(additional, v, false);
                    }
                }
            } else if let Some(additional) = additional {
                for v in map.values_mut() {
                    prepare(additional, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prepare(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn nullable(schema: &Value) -> bool {
    schema
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Validates `obj` (after [`prune_and_default`]) against the schema; `old` is the stored
/// object on update, for transition rules.
pub(crate) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(map) = obj.as_object() else {
        return errors;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, value) in map {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(prop) = properties.and_then(|p| p.get(key)) {
            let old_value = old.and_then(|o| o.get(key));
            check(prop, value, old_value, key, &mut errors);
        }
    }
    required(schema, map, "", &mut errors);
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for key in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(key) {
            errors.push(FieldError::required(join(path, key)));
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn check(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if value.is_null() {
        if !nullable(schema) {
            errors.push(FieldError::invalid(
                path,
                &Value::String("null".to_owned()),
                &format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema_type(schema)
                ),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !int_or_string
        && !type_matches(expected, value)
    {
        let actual = Value::String(type_name(value).to_owned());
        errors.push(FieldError::invalid(
            path,
            &actual,
            &format!(
                "{path} in body must be of type {expected}: \"{}\"",
                type_name(value)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let shown: Vec<Value> = allowed.iter().filter(|v| !v.is_null()).cloned().collect();
        errors.push(FieldError::unsupported(path, value, &shown));
    }
    if let (Some(pattern), Some(text)) = (
        schema.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) && let Ok(re) = regex::Regex::new(pattern)
        && !re.is_match(text)
    {
        errors.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body should match '{pattern}'"),
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should be less than or equal to {max}"),
            ));
        }
    }
    if let Some(text) = value.as_str() {
        let len = text.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should be at most {max} chars long"),
            ));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // Transition rules run only when the field exists in both the old and new object.
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        if is_immutability_rule(text)
            && let Some(old) = old
            && old != value
        {
            let message = rule
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("failed rule: {text}"));
            errors.push(FieldError::invalid(
                path,
                &Value::String(schema_type(schema).to_owned()),
                &message,
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, v) in map {
                let child = properties.and_then(|p| p.get(key)).or(additional);
                if let Some(child) = child {
                    let old_child = old.and_then(|o| o.get(key));
                    check(child, v, old_child, &join(path, key), errors);
                }
            }
            required(schema, map, path, errors);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, None, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn is_immutability_rule(rule: &str) -> bool {
    let compact: String = rule.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "self==oldSelf" || compact == "oldSelf==self"
}

fn schema_type(schema: &Value) -> &str {
    schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {
                        "mode": {"type": "string", "enum": ["a", "b"],
                                 "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                        "count": {"type": "integer", "minimum": 0.0, "default": 1},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_applied() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
                             "spec": {"mode": "a", "unknown": 1, "extra": {"kept": true}}, "other": 2});
        prune_and_default(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
                   "spec": {"mode": "a", "count": 1, "extra": {"kept": true}}})
        );
    }

    #[test]
    fn required_enum_range_and_immutability_are_checked() {
        let errors = validate(&schema(), &json!({"spec": {"count": -1}}), None);
        let texts: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.reason))
            .collect();
        assert_eq!(
            texts,
            [
                ("spec.count", "FieldValueInvalid"),
                ("spec.mode", "FieldValueRequired")
            ]
        );
        let errors = validate(&schema(), &json!({"spec": {"mode": "c"}}), None);
        assert_eq!(errors[0].reason, "FieldValueNotSupported");
        let old = json!({"spec": {"mode": "a"}});
        let errors = validate(&schema(), &json!({"spec": {"mode": "b"}}), Some(&old));
        assert_eq!(
            errors[0].message,
            "Invalid value: \"string\": mode is immutable"
        );
        assert!(validate(&schema(), &json!({"spec": {"mode": "a"}}), Some(&old)).is_empty());
    }
}
