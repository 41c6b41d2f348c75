//! The crate's error types: one for fetching and rendering, one for loading configuration.

use std::path::PathBuf;

use quire_crds::{ReportFormat, ReportType};

use crate::client::RedirectRefusal;

/// Why a report could not be fetched or rendered.
///
/// The `Display` text is meant for the report's owner (it ends up in the report's
/// `error_message`): it names data sources, never their URLs or headers.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The requested data source is not configured.
    ///
    /// The message names only the requested source: listing the configured ones would let
    /// any user enumerate them (their names can reveal internal systems).
    #[error("unknown data source `{name}`")]
    UnknownSource { name: String },
    /// The upstream could not be reached, the connection broke, or it timed out.
    #[error("{0}")]
    Fetch(String),
    /// The source's host is, or resolves to, an address that is not public (loopback,
    /// private, link-local such as cloud metadata, ...) and the source does not set
    /// `allow_private`.
    #[error(
        "data source `{name}` resolves to a private address; set allow_private = true in its definition if it is internal"
    )]
    PrivateAddress { name: String },
    /// The upstream answered with a redirect that is not followed.
    #[error("data source `{name}` {refusal}")]
    Redirect {
        name: String,
        refusal: RedirectRefusal,
    },
    /// The response body is larger than the source's size cap.
    #[error("the data source's response is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The upstream answered with a non-success HTTP status.
    #[error("the data source answered with HTTP status {0}")]
    UpstreamStatus(u16),
    /// The upstream's answer is not the JSON this source is configured to expect.
    #[error("the data source returned unusable data: {0}")]
    BadData(String),
    /// The report type cannot be rendered to this format.
    #[error("a {report_type} report cannot be rendered as {format}")]
    UnsupportedFormat {
        report_type: ReportType,
        format: ReportFormat,
    },
    /// Writing the output file failed.
    #[error("writing the report file failed: {0}")]
    Io(#[from] std::io::Error),
    /// The PDF could not be produced.
    #[error("producing the PDF failed: {0}")]
    Pdf(String),
    /// The worker stopped the render (the report was cancelled, its lease lost, or the
    /// worker is shutting down).
    #[error("the render was stopped")]
    Cancelled,
}

impl RenderError {
    /// True when trying again later may succeed: network errors, timeouts, `5xx`, `429`
    /// and `408` answers, redirect loops, and local I/O errors (a full disk may be freed).
    /// Configuration and data problems (unknown source, private address, redirect to another
    /// origin, bad data, too large, other `4xx`) are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Fetch(_) | Self::Io(_) => true,
            Self::UpstreamStatus(status) => *status >= 500 || *status == 429 || *status == 408,
            Self::Redirect { refusal, .. } => refusal.is_retryable(),
            Self::UnknownSource { .. }
            | Self::PrivateAddress { .. }
            | Self::TooLarge { .. }
            | Self::BadData(_)
            | Self::UnsupportedFormat { .. }
            | Self::Pdf(_)
            | Self::Cancelled => false,
        }
    }

    /// A short stable name for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownSource { .. } => "unknown_source",
            Self::Fetch(_) => "fetch",
            Self::PrivateAddress { .. } => "private_address",
            Self::Redirect { .. } => "redirect",
            Self::TooLarge { .. } => "too_large",
            Self::UpstreamStatus(_) => "upstream_status",
            Self::BadData(_) => "bad_data",
            Self::UnsupportedFormat { .. } => "unsupported_format",
            Self::Cancelled => "cancelled",
            Self::Io(_) => "io",
            Self::Pdf(_) => "pdf",
        }
    }
}

impl From<csv::Error> for RenderError {
    fn from(e: csv::Error) -> Self {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => Self::Io(io),
            other => Self::Io(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

/// Why the data source configuration could not be loaded.
///
/// Messages never contain header values: they may be API keys.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading data source config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML of the expected shape.
    #[error("invalid data source config{}: {message}", origin(path))]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    /// A source's settings are invalid.
    #[error("invalid data source `{name}`{}: {reason}", origin(path))]
    Invalid {
        path: Option<PathBuf>,
        name: String,
        reason: String,
    },
}

fn origin(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    pub(crate) fn with_path(self, file: &std::path::Path) -> Self {
        match self {
            Self::Parse { message, .. } => Self::Parse {
                path: Some(file.to_owned()),
                message,
            },
            Self::Invalid { name, reason, .. } => Self::Invalid {
                path: Some(file.to_owned()),
                name,
                reason,
            },
            read @ Self::Read { .. } => read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        assert!(RenderError::Fetch("timed out".into()).is_retryable());
        assert!(RenderError::UpstreamStatus(500).is_retryable());
        assert!(RenderError::UpstreamStatus(503).is_retryable());
        assert!(RenderError::UpstreamStatus(429).is_retryable());
        assert!(!RenderError::UpstreamStatus(404).is_retryable());
        assert!(!RenderError::UpstreamStatus(401).is_retryable());
        assert!(!RenderError::TooLarge { limit: 1 }.is_retryable());
        assert!(!RenderError::BadData("x".into()).is_retryable());
        let unknown = RenderError::UnknownSource { name: "x".into() };
        assert!(!unknown.is_retryable());
    }

    #[test]
    fn unknown_source_names_only_the_requested_one() {
        let e = RenderError::UnknownSource {
            name: "gmaes".into(),
        };
        assert_eq!(e.to_string(), "unknown data source `gmaes`");
    }
}
