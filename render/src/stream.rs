//! Datasets too big to hold: the body is downloaded to a file (bounded by the source's
//! `max_bytes`), then read row by row, so memory stays flat however many rows there are.
//!
//! - [`download_dataset`] writes the body to a file in a given directory (the worker's
//!   scratch directory), chunk by chunk, under the source's timeout and size cap.
//! - [`StreamedDataset::columns`] is one pass over the file: the requested or configured
//!   columns, else every key in first-seen order (as [`crate::fetch_dataset`] has them).
//! - [`StreamedDataset::for_each_row`] is a second pass, calling back once per row laid out
//!   as those columns, at most `max_rows` of them (the source's cap, or the request's
//!   `limit`).
//!
//! The body is a JSON document with the row objects in an array (at the source's
//! `rows_pointer`, parsed incrementally: only one row is in memory at a time), or NDJSON
//! (one object per line) when the response says `application/x-ndjson`,
//! `application/ndjson`, `application/jsonl` or `application/x-jsonlines`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use quire_crds::DatasetParameters;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::client::{self, FetchClient};
use crate::error::RenderError;
use crate::fetch::{Dataset, OrderedJson, describe};
use crate::progress::{Phase, Progress};
use crate::sources::DataSources;

/// A dataset whose body waits in a file, read row by row.
#[derive(Debug)]
pub struct StreamedDataset {
    /// Name of the data source.
    pub source: String,
    /// Title for PDF output (the source's configured title).
    pub title: Option<String>,
    /// When the body was fetched.
    pub fetched_at: DateTime<Utc>,
    path: PathBuf,
    size: u64,
    ndjson: bool,
    rows_pointer: Option<Vec<String>>,
    pointer_text: Option<String>,
    columns: Option<Vec<String>>,
    max_rows: usize,
}

/// Downloads the body of `params.source` into a file in `dir`. Progress 0 to 40.
///
/// Errors never contain the source's URL or headers: their text reaches the report's owner.
pub async fn download_dataset(
    client: &FetchClient,
    sources: &DataSources,
    params: &DatasetParameters,
    dir: &Path,
    progress: &Progress,
) -> Result<StreamedDataset, RenderError> {
    let source = sources
        .get(&params.source)
        .ok_or_else(|| RenderError::UnknownSource {
            name: params.source.clone(),
        })?;
    let fetched_at = Utc::now();
    let path = dir.join("dataset.body");
    let download = async {
        let fetch_error = |e: reqwest::Error| {
            client::refusal(source.name(), &e)
                .unwrap_or_else(|| RenderError::Fetch(describe(source.name(), e)))
        };
        let mut response = client.get(source)?.send().await.map_err(fetch_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(RenderError::UpstreamStatus(status.as_u16()));
        }
        let ndjson = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|kind| {
                matches!(
                    kind.trim().to_ascii_lowercase().as_str(),
                    "application/x-ndjson"
                        | "application/ndjson"
                        | "application/jsonl"
                        | "application/x-jsonlines"
                )
            });
        let limit = source.max_bytes();
        let declared = response.content_length();
        if declared.is_some_and(|len| len > limit) {
            return Err(RenderError::TooLarge { limit });
        }
        let phase = progress.phase(0, 40);
        let expected = declared.unwrap_or(limit).max(1);
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await?);
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            size += chunk.len() as u64;
            if size > limit {
                return Err(RenderError::TooLarge { limit });
            }
            file.write_all(&chunk).await?;
            phase.report(size, expected)?;
        }
        file.flush().await?;
        Ok((size, ndjson))
    };
    let (size, ndjson) = tokio::time::timeout(source.timeout(), download)
        .await
        .map_err(|_| {
            RenderError::Fetch(format!(
                "data source `{}` did not answer within {} ms",
                source.name(),
                source.timeout().as_millis()
            ))
        })??;
    progress.set(40);
    let max_rows = match params.limit {
        Some(limit) => source
            .max_rows()
            .min(usize::try_from(limit).unwrap_or(usize::MAX)),
        None => source.max_rows(),
    };
    let pointer_text = source.rows_pointer().map(str::to_owned);
    let rows_pointer = pointer_text.as_deref().map(pointer_tokens).transpose()?;
    Ok(StreamedDataset {
        source: source.name().to_owned(),
        title: Some(source.title().to_owned()),
        fetched_at,
        path,
        size,
        ndjson,
        rows_pointer,
        pointer_text,
        columns: params
            .columns
            .clone()
            .or_else(|| source.columns().map(<[String]>::to_vec)),
        max_rows,
    })
}

/// The reference tokens of an RFC 6901 pointer.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, RenderError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| RenderError::BadData(format!("the response has nothing at `{pointer}`")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// What a pass does with each row object, in document order; `Ok(false)` stops the pass.
type RowSink<'a> = dyn FnMut(usize, Vec<(String, OrderedJson)>) -> Result<bool, RenderError> + 'a;

impl StreamedDataset {
    /// The columns of the output: requested or configured, else every key of the rows
    /// that will be kept, in first-seen order. One pass over the body.
    pub(crate) fn columns(&self, phase: &Phase<'_>) -> Result<Vec<String>, RenderError> {
        if let Some(columns) = &self.columns {
            return Ok(columns.clone());
        }
        let mut seen = HashSet::new();
        let mut columns = Vec::new();
        let max_rows = self.max_rows;
        self.pass(phase, &mut |index, entries| {
            if index >= max_rows {
                return Ok(false);
            }
            for (key, _) in entries {
                if seen.insert(key.clone()) {
                    columns.push(key);
                }
            }
            Ok(true)
        })?;
        Ok(columns)
    }

    /// Calls `row` with each kept row's values, one per column (a missing key is `null`;
    /// for duplicate keys the last wins). Returns how many rows were kept and whether the
    /// body had more than the cap allowed.
    pub(crate) fn for_each_row(
        &self,
        columns: &[String],
        phase: &Phase<'_>,
        row: &mut dyn FnMut(Vec<Value>) -> Result<(), RenderError>,
    ) -> Result<(usize, bool), RenderError> {
        let max_rows = self.max_rows;
        let mut kept = 0;
        let mut truncated = false;
        self.pass(phase, &mut |index, entries| {
            if index >= max_rows {
                truncated = true;
                return Ok(false);
            }
            let by_key: HashMap<&str, &OrderedJson> =
                entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
            row(columns
                .iter()
                .map(|c| by_key.get(c.as_str()).map_or(Value::Null, |v| v.to_value()))
                .collect())?;
            kept += 1;
            Ok(true)
        })?;
        Ok((kept, truncated))
    }

    /// Every kept row in memory, as [`crate::fetch_dataset`] returns them (for PDF tables).
    pub(crate) fn load(&self, phase: &Phase<'_>) -> Result<Dataset, RenderError> {
        let columns = self.columns(&phase.sub(0.0, 0.5))?;
        let mut rows = Vec::new();
        let (_, truncated) = self.for_each_row(&columns, &phase.sub(0.5, 1.0), &mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok(Dataset {
            source: self.source.clone(),
            title: self.title.clone(),
            fetched_at: self.fetched_at,
            columns,
            rows,
            truncated,
        })
    }

    /// One pass over the body, calling `sink` per row object until it says stop.
    fn pass(&self, phase: &Phase<'_>, sink: &mut RowSink<'_>) -> Result<(), RenderError> {
        let file = std::fs::File::open(&self.path)?;
        let reader = Counted {
            inner: file,
            read: 0,
            size: self.size.max(1),
            phase,
            cancelled: None,
        };
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut state = PassState {
            sink,
            index: 0,
            failure: None,
        };
        let outcome = if self.ndjson {
            let rows =
                serde_json::Deserializer::from_reader(&mut reader).into_iter::<OrderedJson>();
            let mut outcome = Ok(());
            for value in rows {
                match value {
                    Ok(value) => match state.row(value) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    },
                    Err(e) => {
                        outcome = Err(bad_json(&e));
                        break;
                    }
                }
            }
            outcome
        } else {
            let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
            let seed = AtPointer {
                tokens: self.rows_pointer.as_deref().unwrap_or_default(),
                state: &mut state,
            };
            match seed.deserialize(&mut deserializer) {
                Ok(Found::Rows) => Ok(()),
                Ok(Found::Nothing) => Err(RenderError::BadData(format!(
                    "the response has nothing at `{}`",
                    self.pointer_text.as_deref().unwrap_or_default()
                ))),
                Ok(Found::Other(kind)) => Err(RenderError::BadData(format!(
                    "expected an array of rows{}, found {kind}",
                    self.pointer_text
                        .as_deref()
                        .map(|p| format!(" at `{p}`"))
                        .unwrap_or_default()
                ))),
                // Stopped on purpose (the cap, a sink error): not a JSON problem.
                Err(_) if state.failure.is_some() || state.stopped() => Ok(()),
                Err(e) => Err(bad_json(&e)),
            }
        };
        let stopped = state.stopped();
        let failure = state.failure.take().filter(|_| !stopped);
        // A cancel shows as a read error to serde: it comes first.
        if let Some(e) = reader.into_inner().cancelled.or(failure) {
            return Err(e);
        }
        outcome
    }
}

fn bad_json(e: &serde_json::Error) -> RenderError {
    RenderError::BadData(format!("the response is not valid JSON ({e})"))
}

/// A pass's progress through the rows, and why it stopped early.
struct PassState<'s, 'a> {
    sink: &'s mut RowSink<'a>,
    index: usize,
    /// A sink error (or "stop"), kept while serde unwinds with an error of its own.
    failure: Option<RenderError>,
}

/// The marker a stopped pass unwinds serde with.
const STOPPED: &str = "quire: pass stopped";

impl PassState<'_, '_> {
    /// Hands one row to the sink; `Ok(false)` once it wants no more.
    fn row(&mut self, value: OrderedJson) -> Result<bool, RenderError> {
        let OrderedJson::Object(entries) = value else {
            return Err(RenderError::BadData(format!(
                "row {} is {}, not an object",
                self.index + 1,
                value.kind()
            )));
        };
        let index = self.index;
        self.index += 1;
        (self.sink)(index, entries)
    }

    fn stopped(&self) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|e| matches!(e, RenderError::BadData(m) if m == STOPPED))
    }
}

/// What was at the pointer.
enum Found {
    Rows,
    Nothing,
    Other(&'static str),
}

/// Descends to the array at `tokens`, skipping everything else unparsed into memory, and
/// streams its elements to the pass.
struct AtPointer<'t, 'p, 's, 'a> {
    tokens: &'t [String],
    state: &'p mut PassState<'s, 'a>,
}

impl<'de> DeserializeSeed<'de> for AtPointer<'_, '_, '_, '_> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Found, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AtPointer<'_, '_, '_, '_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document with an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        use serde::de::Error;
        let Some((token, rest)) = self.tokens.split_first() else {
            // The rows: one element at a time.
            while let Some(value) = seq.next_element::<OrderedJson>()? {
                match self.state.row(value) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.state.failure = Some(RenderError::BadData(STOPPED.to_owned()));
                        return Err(A::Error::custom(STOPPED));
                    }
                    Err(e) => {
                        let text = e.to_string();
                        self.state.failure = Some(e);
                        return Err(A::Error::custom(text));
                    }
                }
            }
            return Ok(Found::Rows);
        };
        let wanted = (!(token.starts_with('+') || (token.len() > 1 && token.starts_with('0'))))
            .then(|| token.parse::<usize>().ok())
            .flatten();
        let mut found = Found::Nothing;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                let seed = AtPointer {
                    tokens: rest,
                    state: &mut *self.state,
                };
                match seq.next_element_seed(seed)? {
                    Some(inner) => found = inner,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let Some((token, rest)) = self.tokens.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Found::Other("an object"));
        };
        let mut found = Found::Nothing;
        while let Some(key) = map.next_key::<String>()? {
            if key == *token {
                // The first match is read; later duplicates are skipped.
                if matches!(found, Found::Nothing) {
                    let seed = AtPointer {
                        tokens: rest,
                        state: &mut *self.state,
                    };
                    found = map.next_value_seed(seed)?;
                    continue;
                }
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
        Ok(self.scalar("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Found, E> {
        Ok(self.scalar("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Found, E> {
        Ok(self.scalar("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Found, E> {
        Ok(self.scalar("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Found, E> {
        Ok(self.scalar("a string"))
    }
    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(self.scalar("null"))
    }
}

impl AtPointer<'_, '_, '_, '_> {
    /// A scalar: the rows if the pointer ends here (then it is the wrong kind), else nothing.
    fn scalar(&self, kind: &'static str) -> Found {
        if self.tokens.is_empty() {
            Found::Other(kind)
        } else {
            Found::Nothing
        }
    }
}

/// Counts what is read, for progress (and a cancel noticed between reads).
struct Counted<'p, 'a, R> {
    inner: R,
    read: u64,
    size: u64,
    phase: &'p Phase<'a>,
    cancelled: Option<RenderError>,
}

impl<R: Read> Read for Counted<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Err(e) = self.phase.report(self.read, self.size) {
            self.cancelled = Some(e);
            return Err(std::io::Error::other("cancelled"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dataset(
        body: &str,
        ndjson: bool,
        pointer: Option<&str>,
        max_rows: usize,
    ) -> (StreamedDataset, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        std::fs::write(&path, body).unwrap();
        let data = StreamedDataset {
            source: "s".into(),
            title: None,
            fetched_at: Utc::now(),
            path,
            size: body.len() as u64,
            ndjson,
            rows_pointer: pointer.map(|p| pointer_tokens(p).unwrap()),
            pointer_text: pointer.map(str::to_owned),
            columns: None,
            max_rows,
        };
        (data, dir)
    }

    type Read = (Vec<String>, Vec<Vec<Value>>, bool);

    fn read_all(data: &StreamedDataset) -> Result<Read, RenderError> {
        let progress = Progress::new();
        let phase = progress.phase(0, 100);
        let columns = data.columns(&phase)?;
        let mut rows = Vec::new();
        let (_, truncated) = data.for_each_row(&columns, &phase, &mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok((columns, rows, truncated))
    }

    #[test]
    fn an_array_at_a_pointer_streams_as_the_in_memory_path_reads_it() {
        let body = r#"{"meta": {"skip": [1, 2, {"deep": true}]}, "data": {"a/b": [{"z": 1, "a": {"n": [1]}}, {"m": "x", "z": 2, "z": 3}, {"z": 4}]}}"#;
        let (data, _dir) = dataset(body, false, Some("/data/a~1b"), 2);
        let (columns, rows, truncated) = read_all(&data).unwrap();
        assert_eq!(columns, ["z", "a", "m"]);
        assert_eq!(
            rows,
            vec![
                vec![json!(1), json!({"n": [1]}), json!(null)],
                vec![json!(3), json!(null), json!("x")]
            ]
        );
        assert!(truncated);
        let (data, _dir) = dataset(body, false, Some("/data/a~1b"), 3);
        assert!(!read_all(&data).unwrap().2);
    }

    #[test]
    fn ndjson_is_one_row_per_line() {
        let (data, _dir) = dataset("{\"a\": 1}\n{\"b\": 2}\n\n{\"a\": 3}\n", true, None, 10);
        let (columns, rows, truncated) = read_all(&data).unwrap();
        assert_eq!(columns, ["a", "b"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], vec![json!(3), json!(null)]);
        assert!(!truncated);
    }

    #[test]
    fn malformed_shapes_are_bad_data_with_the_same_words() {
        for (body, pointer, needle) in [
            ("not json", None, "not valid JSON"),
            (
                r#"{"a": 1}"#,
                None,
                "expected an array of rows, found an object",
            ),
            (r#"{"a": 1}"#, Some("/results"), "nothing at `/results`"),
            (
                r#"{"a": [1]}"#,
                Some("/a/0"),
                "expected an array of rows at `/a/0`, found a number",
            ),
            (r#"[{"a": 1}, 5]"#, None, "row 2 is a number"),
            (r#"[{"a": 1}, {"a": "#, None, "not valid JSON"),
        ] {
            let (data, _dir) = dataset(body, false, pointer, 10);
            let e = read_all(&data).unwrap_err();
            assert!(matches!(e, RenderError::BadData(_)), "{e:?}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn an_empty_array_is_an_empty_dataset() {
        let (data, _dir) = dataset("[]", false, None, 10);
        let (columns, rows, truncated) = read_all(&data).unwrap();
        assert!(columns.is_empty() && rows.is_empty() && !truncated);
    }

    #[test]
    fn pointers_index_arrays_and_unescape_tokens() {
        let body = r#"{"a": [10, {"~k": [{"x": 1}], "b/c": [{"y": 2}]}]}"#;
        let (data, _dir) = dataset(body, false, Some("/a/1/~0k"), 10);
        assert_eq!(read_all(&data).unwrap().1, vec![vec![json!(1)]]);
        let (data, _dir) = dataset(body, false, Some("/a/1/b~1c"), 10);
        assert_eq!(read_all(&data).unwrap().1, vec![vec![json!(2)]]);
        for missing in ["/a/01", "/a/9", "/a/1/none"] {
            let (data, _dir) = dataset(body, false, Some(missing), 10);
            let e = read_all(&data).unwrap_err();
            assert!(e.to_string().contains("nothing at"), "{missing}: {e}");
        }
    }

    #[test]
    fn a_cancel_stops_a_pass() {
        let body = format!("[{}]", vec![r#"{"a": 1}"#; 10_000].join(","));
        let (data, _dir) = dataset(&body, false, None, 100_000);
        let progress = Progress::new();
        progress.cancel();
        let phase = progress.phase(0, 100);
        let e = data.columns(&phase).unwrap_err();
        assert!(matches!(e, RenderError::Cancelled), "{e:?}");
    }
}
