//! Typed parameters of each report type. `POST /reports` validates the request's
//! `parameters` object against these before anything is stored, and the worker parses the
//! stored value with the same types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ReportType;

/// Largest `limit` a dataset report may ask for. What a report gets is set by the
/// operator's per-source cap (`max_rows`, and `max_bytes`): datasets stream from their
/// body to the output, so that cap may be millions of rows.
pub const MAX_DATASET_ROWS: u32 = 100_000_000;

/// Parameters of a `profile` report: none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileParameters {}

/// Parameters of an `activity` report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityParameters {
    /// How many days back the history and the per-day chart reach (1–366, default 30).
    #[serde(default = "ActivityParameters::default_days")]
    #[schemars(range(min = 1, max = 366))]
    pub days: u32,
}

impl ActivityParameters {
    fn default_days() -> u32 {
        30
    }
}

impl Default for ActivityParameters {
    fn default() -> Self {
        Self {
            days: Self::default_days(),
        }
    }
}

/// Parameters of a `dataset` report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetParameters {
    /// Name of an operator-configured data source (`GET /data-sources`). Never a URL.
    #[schemars(length(min = 1, max = 64))]
    pub source: String,
    /// Only these columns, in this order (default: every column of the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// At most this many rows (default and ceiling: the source's row cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub limit: Option<u32>,
}

/// Parameters of any report, tagged by its type.
#[derive(Clone, Debug, PartialEq)]
pub enum ReportParameters {
    Profile(ProfileParameters),
    Activity(ActivityParameters),
    Dataset(DatasetParameters),
}

/// Why a `parameters` object was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameters for a {report_type} report: {reason}")]
pub struct ParameterError {
    pub report_type: ReportType,
    pub reason: String,
}

/// The JSON Schema of `report_type`'s parameters, generated from the types that validate
/// them (so it cannot drift from what [`ReportParameters::parse`] accepts, bar the range
/// checks it states in descriptions).
pub fn parameters_schema(report_type: ReportType) -> Value {
    let schema = match report_type {
        ReportType::Profile => schemars::schema_for!(ProfileParameters),
        ReportType::Activity => schemars::schema_for!(ActivityParameters),
        ReportType::Dataset => schemars::schema_for!(DatasetParameters),
    };
    schema.to_value()
}

impl ReportParameters {
    /// Parses and validates `value` (`null` counts as `{}`) for `report_type`.
    pub fn parse(report_type: ReportType, value: &Value) -> Result<Self, ParameterError> {
        let fail = |reason: String| ParameterError {
            report_type,
            reason,
        };
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value.clone()
        };
        if !value.is_object() {
            return Err(fail("must be a JSON object".into()));
        }
        let parsed = match report_type {
            ReportType::Profile => serde_json::from_value(value).map(Self::Profile),
            ReportType::Activity => serde_json::from_value(value).map(Self::Activity),
            ReportType::Dataset => serde_json::from_value(value).map(Self::Dataset),
        }
        .map_err(|e| fail(e.to_string()))?;
        parsed.validate().map_err(fail)?;
        Ok(parsed)
    }

    /// The canonical JSON form (defaults filled in) that is stored with the report.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Profile(p) => serde_json::to_value(p),
            Self::Activity(p) => serde_json::to_value(p),
            Self::Dataset(p) => serde_json::to_value(p),
        }
        .expect("report parameters always serialise")
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Profile(_) => Ok(()),
            Self::Activity(p) if !(1..=366).contains(&p.days) => {
                Err(format!("`days` must be between 1 and 366, got {}", p.days))
            }
            Self::Activity(_) => Ok(()),
            Self::Dataset(p) => {
                let name_ok = !p.source.is_empty()
                    && p.source.len() <= 64
                    && p.source
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !name_ok {
                    return Err(format!(
                        "`source` must be the name of a configured data source (letters, digits, `-`, `_`), got {:?}",
                        p.source
                    ));
                }
                if let Some(limit) = p.limit
                    && !(1..=MAX_DATASET_ROWS).contains(&limit)
                {
                    return Err(format!(
                        "`limit` must be between 1 and {MAX_DATASET_ROWS}, got {limit}"
                    ));
                }
                if let Some(columns) = &p.columns
                    && (columns.is_empty()
                        || columns.len() > 64
                        || columns.iter().any(|c| c.is_empty()))
                {
                    return Err("`columns` must list 1 to 64 non-empty column names".into());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_means_defaults() {
        let p = ReportParameters::parse(ReportType::Activity, &Value::Null).unwrap();
        assert_eq!(p.to_value(), json!({"days": 30}));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = ReportParameters::parse(ReportType::Profile, &json!({"x": 1})).unwrap_err();
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    #[test]
    fn dataset_source_must_be_a_name_not_a_url() {
        let e = ReportParameters::parse(ReportType::Dataset, &json!({"source": "http://evil/"}))
            .unwrap_err();
        assert!(e.reason.contains("configured data source"), "{e}");
        assert!(ReportParameters::parse(ReportType::Dataset, &json!({"source": "games"})).is_ok());
    }

    #[test]
    fn limits_are_bounded() {
        assert!(ReportParameters::parse(ReportType::Activity, &json!({"days": 0})).is_err());
        assert!(
            ReportParameters::parse(ReportType::Dataset, &json!({"source": "a", "limit": 0}))
                .is_err()
        );
    }
}
