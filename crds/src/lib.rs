//! Contract types shared by every Quire component: the API server, the worker, the
//! controller and the CLI agree on these names, their JSON spelling and their meaning.
//!
//! Changing a variant's spelling here is a breaking change for stored rows, queued
//! messages and `ReportRequest` resources.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod message;
pub mod model;
mod parameters;
pub mod report_request;
pub mod webhook;

pub use message::{WORK_MESSAGE_VERSION, WorkMessage};
pub use parameters::{
    ActivityParameters, DatasetParameters, ParameterError, ProfileParameters, ReportParameters,
    parameters_schema,
};
pub use report_request::{ReportRequest, ReportRequestSpec, ReportRequestStatus};

/// Declares a string-backed enum with `as_str`, `Display`, `FromStr` and serde in one place,
/// so the database, the JSON API and the queue can never spell a variant differently.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical lowercase spelling used in JSON, SQL and messages.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: stringify!($name),
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A string that names no variant of a contract enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {}", expected.join(", "))]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

string_enum! {
    /// What a report contains.
    ReportType {
        /// PDF of the requesting user's profile: identity, account age, report summary, chart.
        Profile => "profile",
        /// The user's report history as CSV or PDF (table plus charts).
        Activity => "activity",
        /// Rows fetched from an operator-configured data source, as CSV, JSON or PDF.
        Dataset => "dataset",
    }
}

string_enum! {
    /// The file format a report is rendered to.
    ReportFormat {
        Pdf => "pdf",
        Csv => "csv",
        Json => "json",
    }
}

string_enum! {
    /// Where a report is in its lifecycle.
    ///
    /// `pending` → `queued` → `running` → `completed` | `failed`, and `cancelled` from any
    /// state that has not finished. A failed attempt that will be retried goes back to `queued`.
    ReportStatus {
        /// Stored, not yet handed to the work queue.
        Pending => "pending",
        /// A work message was sent; waiting for a worker.
        Queued => "queued",
        /// A worker holds the lease and is rendering.
        Running => "running",
        /// The output is stored and downloadable.
        Completed => "completed",
        /// Every attempt failed; `error_message` says why.
        Failed => "failed",
        /// The owner cancelled it before it finished.
        Cancelled => "cancelled",
    }
}

impl ReportStatus {
    /// True once nothing more will happen to the report.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl ReportFormat {
    /// File name extension of an output in this format.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    /// MIME type of an output in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }
}

impl ReportType {
    /// The formats this report type can be rendered to.
    pub fn supported_formats(self) -> &'static [ReportFormat] {
        match self {
            Self::Profile => &[ReportFormat::Pdf],
            Self::Activity => &[ReportFormat::Csv, ReportFormat::Pdf],
            Self::Dataset => &[ReportFormat::Csv, ReportFormat::Json, ReportFormat::Pdf],
        }
    }

    /// True when `format` is one this type can be rendered to.
    pub fn supports(self, format: ReportFormat) -> bool {
        self.supported_formats().contains(&format)
    }

    /// `Ok` when this type can be rendered as `format`; else the message the API and the
    /// controller both give, naming the formats that would do.
    pub fn check_format(self, format: ReportFormat) -> Result<(), String> {
        if self.supports(format) {
            return Ok(());
        }
        let supported: Vec<_> = self
            .supported_formats()
            .iter()
            .map(|f| f.as_str())
            .collect();
        Err(format!(
            "a {self} report cannot be rendered as {format}; supported formats: {}",
            supported.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_its_spelling() {
        for s in ReportStatus::ALL {
            assert_eq!(s.as_str().parse::<ReportStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for t in ReportType::ALL {
            assert_eq!(t.as_str().parse::<ReportType>().unwrap(), *t);
        }
        for f in ReportFormat::ALL {
            assert_eq!(f.as_str().parse::<ReportFormat>().unwrap(), *f);
        }
    }

    #[test]
    fn unknown_spelling_names_the_choices() {
        let err = "xlsx".parse::<ReportFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown ReportFormat `xlsx`; expected one of: pdf, csv, json"
        );
    }

    #[test]
    fn profile_is_pdf_only() {
        assert!(ReportType::Profile.supports(ReportFormat::Pdf));
        assert!(!ReportType::Profile.supports(ReportFormat::Csv));
        assert!(ReportType::Dataset.supports(ReportFormat::Json));
        assert!(!ReportType::Activity.supports(ReportFormat::Json));
        assert_eq!(ReportType::Activity.check_format(ReportFormat::Pdf), Ok(()));
        assert_eq!(
            ReportType::Profile.check_format(ReportFormat::Csv),
            Err("a profile report cannot be rendered as csv; supported formats: pdf".to_owned())
        );
    }
}
