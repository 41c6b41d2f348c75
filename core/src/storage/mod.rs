//! Output storage: where rendered files live and how users download them.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::model::StoredOutput;

pub mod local;
pub mod s3;

pub use local::LocalStorage;
pub use s3::S3Storage;

/// How a stored object is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `Content-Type` of the download.
    pub content_type: String,
    /// File name suggested to the browser (`Content-Disposition: attachment; filename=…`).
    pub file_name: String,
}

/// An expiring link to a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Stores rendered outputs under keys derived from the report id, so a second delivery of
/// the same work overwrites the same object instead of producing a second one.
#[async_trait]
pub trait OutputStorage: Send + Sync + 'static {
    /// Stores the file at `path` under `key`, streaming it; returns its size and checksum.
    async fn put_file(&self, key: &str, path: &Path, meta: &ObjectMeta) -> Result<StoredOutput>;
    /// Deletes the object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// True when an object is stored under `key`.
    async fn exists(&self, key: &str) -> Result<bool>;
    /// The complete object stored under `key`, if there is one, with the size and SHA-256
    /// recorded when it was stored. Objects only ever appear whole (a rename, a single
    /// `PutObject`, a completed multipart upload), so a retry whose earlier attempt stored
    /// the output and died before recording it adopts this instead of storing it again.
    async fn stored(&self, key: &str) -> Result<Option<StoredOutput>>;
    /// A URL that downloads the object until `ttl` from now.
    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> Result<DownloadUrl>;
    /// True when `url`, a link this storage handed out earlier, still points where it serves
    /// from now (its address or bucket did not change since), so a cached link may be reused.
    fn recognises_url(&self, url: &str) -> bool;
    /// Succeeds when the storage is reachable and writable.
    async fn ping(&self) -> Result<()>;
}

/// The file's size and SHA-256, read in 64 KiB chunks without blocking the runtime.
pub(crate) async fn size_and_sha256(path: &Path) -> std::io::Result<(u64, Vec<u8>)> {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncReadExt;

    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().to_vec()))
}

/// The storage key of a report's output: `{user_id}/{report_id}.{ext}`.
pub fn output_key(report: &crate::model::Report) -> String {
    format!(
        "{}/{}.{}",
        report.user_id,
        report.id,
        report.format.extension()
    )
}

/// Refuses keys that are not of the `{user_id}/{report_id}.{ext}` kind: empty, absolute,
/// with empty, `.` or `..` segments, or characters beyond `[A-Za-z0-9._-]`. Every backend
/// checks keys with it, so none can be made to write outside its root or prefix.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Invalid(format!(
            "invalid storage key {key:?}"
        )))
    }
}

/// How a report's output is served.
pub fn output_meta(report: &crate::model::Report) -> ObjectMeta {
    ObjectMeta {
        content_type: report.format.content_type().to_owned(),
        file_name: format!(
            "quire-{}-{}.{}",
            report.report_type,
            report.id,
            report.format.extension()
        ),
    }
}
