//! Operator-configured named data sources (see the crate docs for the file format).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::error::ConfigError;

/// Whole-request timeout of a source that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Response size cap of a source that sets none: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Row cap of a source that sets none.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// The configured data sources, by name.
#[derive(Clone, Debug, Default)]
pub struct DataSources {
    sources: BTreeMap<String, DataSource>,
}

/// One validated data source.
#[derive(Clone)]
pub struct DataSource {
    name: String,
    url: Url,
    rows_pointer: Option<String>,
    columns: Option<Vec<String>>,
    timeout: Duration,
    max_bytes: u64,
    max_rows: usize,
    headers: HeaderMap,
    title: Option<String>,
    allow_private: bool,
}

impl DataSource {
    /// The name users refer to it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where rows are fetched from (http or https). Not for users' eyes or logs: it may
    /// reveal internal hosts.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// JSON pointer to the array of rows in the response, if it is not the whole body.
    pub fn rows_pointer(&self) -> Option<&str> {
        self.rows_pointer.as_deref()
    }

    /// Columns used when a request names none (default: every key, in first-seen order).
    pub fn columns(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    /// Limit on the whole request: connecting, waiting and reading the body.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Largest response body accepted, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Most rows kept; a request's `limit` can only lower it.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Static headers sent with every request (values are marked sensitive).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Title for PDF output: the configured title, else the name.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// True when the operator marked the source internal: its host may be a loopback,
    /// private or link-local address (default: only public addresses are fetched from).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }
}

impl fmt::Debug for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are typically credentials: show only which headers are set.
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("<redacted>"));
        }
        f.debug_struct("DataSource")
            .field("name", &self.name)
            .field("url", &url.as_str())
            .field("rows_pointer", &self.rows_pointer)
            .field("columns", &self.columns)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_rows", &self.max_rows)
            .field("headers", &header_names)
            .field("title", &self.title)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: String,
    rows_pointer: Option<String>,
    columns: Option<Vec<String>>,
    timeout_secs: Option<u64>,
    timeout_ms: Option<u64>,
    max_bytes: Option<u64>,
    max_rows: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    title: Option<String>,
    #[serde(default)]
    allow_private: bool,
}

impl DataSources {
    /// No sources: every dataset report fails with [`crate::RenderError::UnknownSource`].
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses and validates a TOML configuration.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(s).map_err(|e| ConfigError::Parse {
            path: None,
            // Only the message and a line number: toml's own rendering quotes the
            // offending line, which could be a header holding an API key.
            message: match e.span() {
                Some(span) => format!("line {}: {}", line_of(s, span.start), e.message()),
                None => e.message().to_owned(),
            },
        })?;
        let sources = raw
            .sources
            .into_iter()
            .map(|(name, raw)| {
                let source = validate(&name, raw).map_err(|reason| ConfigError::Invalid {
                    path: None,
                    name: name.clone(),
                    reason,
                })?;
                Ok((name, source))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { sources })
    }

    /// Reads and validates a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.with_path(path))
    }

    /// The configured names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&DataSource> {
        self.sources.get(name)
    }

    /// How many sources are configured.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no source is configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    let end = byte.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn validate(name: &str, raw: RawSource) -> Result<DataSource, String> {
    // Same rule as a dataset report's `source` parameter, or users could never pick it.
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err("names may only use 1 to 64 ASCII letters, digits, `-` and `_`".into());
    }

    let url = Url::parse(&raw.url).map_err(|e| format!("`url` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`url` must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("`url` has no host".into());
    }

    let rows_pointer = match raw.rows_pointer {
        Some(p) if p.is_empty() => None,
        Some(p) if !p.starts_with('/') => {
            return Err(format!(
                "`rows_pointer` must be a JSON pointer starting with `/`, got {p:?}"
            ));
        }
        other => other,
    };

    if let Some(columns) = &raw.columns
        && (columns.is_empty() || columns.iter().any(String::is_empty))
    {
        return Err("`columns` must list at least one non-empty column name".into());
    }

    let timeout = match (raw.timeout_secs, raw.timeout_ms) {
        (Some(_), Some(_)) => return Err("set `timeout_secs` or `timeout_ms`, not both".into()),
        (Some(s), None) => Duration::from_secs(s),
        (None, Some(ms)) => Duration::from_millis(ms),
        (None, None) => DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err("the timeout must be greater than zero".into());
    }

    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 {
        return Err("`max_bytes` must be greater than zero".into());
    }
    let max_rows = match raw.max_rows {
        None => DEFAULT_MAX_ROWS,
        Some(0) => return Err("`max_rows` must be greater than zero".into()),
        Some(n) => usize::try_from(n).map_err(|_| "`max_rows` is too large".to_owned())?,
    };

    let mut headers = HeaderMap::new();
    for (key, value) in raw.headers {
        let header = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("`headers` has an invalid header name {key:?}"))?;
        // Never echo the value: it is likely a credential.
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header `{key}` is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }

    Ok(DataSource {
        name: name.to_owned(),
        url,
        rows_pointer,
        columns: raw.columns,
        timeout,
        max_bytes,
        max_rows,
        headers,
        title: raw.title.filter(|t| !t.trim().is_empty()),
        allow_private: raw.allow_private,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        [sources.games]
        url = "https://api.example.com/games"
        rows_pointer = "/results"
        columns = ["name", "url"]
        timeout_secs = 3
        max_bytes = 2048
        max_rows = 50
        headers = { "Accept" = "application/json", "X-Api-Key" = "s3cret" }
        title = "Games"

        [sources.plain]
        url = "http://127.0.0.1:8080/rows"
        allow_private = true
    "#;

    #[test]
    fn parses_every_setting_and_applies_defaults() {
        let sources = DataSources::from_toml_str(FULL).unwrap();
        assert_eq!(sources.names().collect::<Vec<_>>(), ["games", "plain"]);

        let games = sources.get("games").unwrap();
        assert_eq!(games.url().as_str(), "https://api.example.com/games");
        assert_eq!(games.rows_pointer(), Some("/results"));
        assert_eq!(games.columns().unwrap(), ["name", "url"]);
        assert_eq!(games.timeout(), Duration::from_secs(3));
        assert_eq!(games.max_bytes(), 2048);
        assert_eq!(games.max_rows(), 50);
        assert_eq!(games.headers()["x-api-key"], "s3cret");
        assert_eq!(games.title(), "Games");
        assert!(!games.allow_private(), "sources are public-only by default");

        let plain = sources.get("plain").unwrap();
        assert_eq!(plain.rows_pointer(), None);
        assert_eq!(plain.columns(), None);
        assert_eq!(plain.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(plain.max_bytes(), DEFAULT_MAX_BYTES);
        assert_eq!(plain.max_rows(), DEFAULT_MAX_ROWS);
        assert_eq!(plain.title(), "plain");
        assert!(plain.allow_private());
        assert!(sources.get("nope").is_none());
    }

    #[test]
    fn debug_output_never_shows_header_values() {
        let sources = DataSources::from_toml_str(FULL).unwrap();
        let debug = format!("{sources:?}");
        assert!(debug.contains("x-api-key"), "{debug}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn empty_text_and_empty_env_mean_no_sources() {
        assert!(DataSources::from_toml_str("").unwrap().is_empty());
        assert_eq!(DataSources::empty().names().count(), 0);
    }

    fn invalid(toml: &str) -> String {
        DataSources::from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn rejects_non_http_urls() {
        let e = invalid("[sources.x]\nurl = \"file:///etc/passwd\"");
        assert!(e.contains("must be http or https"), "{e}");
        let e = invalid("[sources.x]\nurl = \"not a url\"");
        assert!(e.contains("not a valid URL"), "{e}");
    }

    #[test]
    fn rejects_names_users_could_not_pick() {
        let e = invalid("[sources.\"has space\"]\nurl = \"https://a.example\"");
        assert!(e.contains("has space"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_limits() {
        let e = invalid("[sources.x]\nurl = \"https://a.example\"\nmax_row = 5");
        assert!(e.contains("line 3") && e.contains("max_row"), "{e}");
        let e = invalid("[sources.x]\nurl = \"https://a.example\"\nmax_rows = 0");
        assert!(e.contains("max_rows"), "{e}");
        let e =
            invalid("[sources.x]\nurl = \"https://a.example\"\ntimeout_secs = 1\ntimeout_ms = 5");
        assert!(e.contains("not both"), "{e}");
        let e = invalid("[sources.x]\nurl = \"https://a.example\"\nrows_pointer = \"results\"");
        assert!(e.contains("rows_pointer"), "{e}");
    }

    #[test]
    fn bad_header_values_are_rejected_without_echoing_them() {
        let e = invalid(
            "[sources.x]\nurl = \"https://a.example\"\nheaders = { \"X-Key\" = \"bad\\nsecret\" }",
        );
        assert!(e.contains("X-Key"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn from_file_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sources.toml");
        std::fs::write(&path, "[sources.x]\nurl = \"ftp://a.example\"").unwrap();
        let e = DataSources::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("sources.toml"), "{e}");

        std::fs::write(&path, FULL).unwrap();
        assert_eq!(DataSources::from_file(&path).unwrap().len(), 2);
        let e = DataSources::from_file(&dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }
}
