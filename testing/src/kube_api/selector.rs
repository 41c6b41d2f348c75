//! `labelSelector` and `fieldSelector` query parameters.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits at commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |term: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{term}', expected: a valid label selector"
            ))
        };
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else if let Some((key, rest)) = set_operator(&term) {
                let (op, values) = rest;
                let values: BTreeSet<String> = values
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
                if op == "in" {
                    Requirement::In(key, values)
                } else {
                    Requirement::NotIn(key, values)
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else {
                Requirement::Exists(term.clone())
            };
            let key = match &requirement {
                Requirement::Exists(k)
                | Requirement::NotExists(k)
                | Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _) => k,
            };
            if !valid_key(key) {
                return Err(bad(&term));
            }
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| !vs.contains(l)),
        })
    }
}

/// `key in (a, b)` → (`key`, (`in`, `a, b`)).
fn set_operator(term: &str) -> Option<(String, (&'static str, String))> {
    let open = term.find('(')?;
    let close = term.rfind(')')?;
    if close != term.len() - 1 || close < open {
        return None;
    }
    let head = term[..open].trim();
    let values = term[open + 1..close].to_owned();
    for op in ["notin", "in"] {
        if let Some(key) = head.strip_suffix(op)
            && key.ends_with(char::is_whitespace)
        {
            return Some((key.trim().to_owned(), (op, values)));
        }
    }
    None
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-separated.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// `any_field` allows any dotted path (as the apiserver does for a few fields of
    /// events); otherwise only `metadata.name` and `metadata.namespace`, like for custom
    /// resources.
    pub(crate) fn parse(text: &str, any_field: bool) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_terms(text) {
            let (path, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let path = path.trim().to_owned();
            if !any_field && path != "metadata.name" && path != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut current = Some(object);
            for part in path.split('.') {
                current = current.and_then(|c| c.get(part));
            }
            let actual = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selectors_cover_equality_sets_and_existence() {
        let obj = json!({"metadata": {"labels": {"app": "quire", "tier": "web"}}});
        let matches = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(matches(""));
        assert!(matches("app=quire"));
        assert!(matches("app==quire,tier"));
        assert!(!matches("app!=quire"));
        assert!(matches("tier in (web, db)"));
        assert!(!matches("tier notin (web,db)"));
        assert!(matches("!missing"));
        assert!(!matches("missing"));
        assert!(matches("missing notin (x)"));
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}});
        let matches = |s: &str| FieldSelector::parse(s, false).unwrap().matches(&obj);
        assert!(matches("metadata.name=a"));
        assert!(matches("metadata.name==a,metadata.namespace!=other"));
        assert!(!matches("metadata.name=b"));
        assert!(FieldSelector::parse("spec.x=1", false).is_err());
    }
}
