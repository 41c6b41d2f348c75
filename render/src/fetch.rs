//! Fetching a dataset's rows from a configured data source.

use std::fmt;

use chrono::{DateTime, Utc};
use quire_crds::DatasetParameters;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::client::FetchClient;
use crate::error::RenderError;
use crate::progress::Progress;
use crate::sources::DataSources;

/// Rows fetched from a data source, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Name of the data source.
    pub source: String,
    /// Title for PDF output (the source's configured title), if any.
    pub title: Option<String>,
    /// When the rows were fetched.
    pub fetched_at: DateTime<Utc>,
    /// Column names, in output order.
    pub columns: Vec<String>,
    /// One value per column for each row; a key missing from a row is `null`.
    pub rows: Vec<Vec<Value>>,
    /// True when the source had more rows than the row cap allowed.
    pub truncated: bool,
}

/// Fetches the rows of `params.source` into memory.
///
/// The body is downloaded as [`crate::download_dataset`] does it (bounded by the source's
/// timeout and size cap, into a temporary directory) and its kept rows are read into a
/// [`Dataset`]. Progress goes from 0 to 50: to 40 while the body arrives, to 50 as rows are
/// read. The worker streams instead ([`crate::render_streamed_dataset`]); this is for
/// callers that want the rows at hand.
///
/// The fetch goes through `client`, which refuses non-public addresses unless the source
/// allows them and follows only same-origin redirects (see [`FetchClient`]).
///
/// Errors never contain the source's URL or headers: their text reaches the report's owner.
pub async fn fetch_dataset(
    client: &FetchClient,
    sources: &DataSources,
    params: &DatasetParameters,
    progress: &Progress,
) -> Result<Dataset, RenderError> {
    let dir = tempfile::tempdir()?;
    let body =
        crate::stream::download_dataset(client, sources, params, dir.path(), progress).await?;
    let data = body.load(&progress.phase(40, 50))?;
    progress.set(50);
    tracing::debug!(
        source = %data.source,
        rows = data.rows.len(),
        columns = data.columns.len(),
        truncated = data.truncated,
        "fetched dataset"
    );
    Ok(data)
}

/// A reqwest error as a message naming the source, without the URL.
pub(crate) fn describe(source: &str, e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else if e.is_redirect() {
        "sent a redirect that could not be followed"
    } else if e.is_body() {
        "broke off its answer"
    } else {
        "could not be fetched"
    };
    // The innermost cause says what actually happened ("Connection refused", ...).
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("data source `{source}` {what}: {cause}")
}

/// A JSON value that keeps object keys in document order (serde_json's own `Value` sorts
/// them unless the `preserve_order` feature is on, which would change every crate's JSON).
#[derive(Debug)]
pub(crate) enum OrderedJson {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OrderedJson>),
    Object(Vec<(String, OrderedJson)>),
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrderedJsonVisitor)
    }
}

struct OrderedJsonVisitor;

impl<'de> Visitor<'de> for OrderedJsonVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<OrderedJson, E> {
        Ok(serde_json::Number::from_f64(v).map_or(OrderedJson::Null, OrderedJson::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }
    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }
    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OrderedJson, D::Error> {
        OrderedJson::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedJson::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(OrderedJson::Object(entries))
    }
}

impl OrderedJson {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            OrderedJson::Null => "null",
            OrderedJson::Bool(_) => "a boolean",
            OrderedJson::Number(_) => "a number",
            OrderedJson::String(_) => "a string",
            OrderedJson::Array(_) => "an array",
            OrderedJson::Object(_) => "an object",
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            OrderedJson::Null => Value::Null,
            OrderedJson::Bool(b) => Value::Bool(*b),
            OrderedJson::Number(n) => Value::Number(n.clone()),
            OrderedJson::String(s) => Value::String(s.clone()),
            OrderedJson::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            OrderedJson::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}
