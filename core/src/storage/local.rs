//! Output storage in a local directory, for the embedded mode and single-host deployments.
//!
//! Downloads are served by the API server at `/files/{key}` behind an HMAC-SHA256 signed,
//! expiring URL ([`LocalStorage::download_url`] signs, [`LocalStorage::verify`] checks), the
//! local equivalent of an S3 presigned URL: whoever holds the link may download until it
//! expires, and nobody can forge or extend one without the signing key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use url::Url;

use super::{DownloadUrl, ObjectMeta, OutputStorage};
use crate::model::StoredOutput;
use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Outputs under a root directory; see the module docs.
pub struct LocalStorage {
    root: PathBuf,
    /// Where the API server is reachable, e.g. `http://127.0.0.1:8080/`.
    public_url: Url,
    signing_key: Vec<u8>,
}

impl std::fmt::Debug for LocalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStorage")
            .field("root", &self.root)
            .field("public_url", &self.public_url.as_str())
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

/// Why a `/files/…` request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the download link is malformed or its signature does not match")]
    BadSignature,
    #[error("the download link has expired")]
    Expired,
    #[error("the file no longer exists")]
    Gone,
}

/// A verified download: the file to stream and how to present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    pub path: PathBuf,
    pub meta: ObjectMeta,
}

impl LocalStorage {
    /// Storage rooted at `root` (created if missing). `signing_key` must be at least 32 bytes.
    pub fn new(root: impl Into<PathBuf>, public_url: Url, signing_key: Vec<u8>) -> Result<Self> {
        if signing_key.len() < 32 {
            return Err(Error::Invalid(
                "the download signing key must be at least 32 bytes".into(),
            ));
        }
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            public_url,
            signing_key,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file for `key`, refusing keys that could escape the root.
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        super::check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The MAC over everything a link promises: key, expiry and how the file is served.
    fn mac(&self, key: &str, expires: i64, meta: &ObjectMeta) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.signing_key).expect("HMAC takes any key length");
        // Length-prefixed fields, so no two different tuples sign the same bytes.
        for field in [
            key,
            &expires.to_string(),
            &meta.content_type,
            &meta.file_name,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// Checks a `/files/{key}` request's query and returns the file to serve.
    pub fn verify(
        &self,
        key: &str,
        expires: i64,
        content_type: &str,
        file_name: &str,
        signature_hex: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<VerifiedFile, LinkError> {
        let meta = ObjectMeta {
            content_type: content_type.to_owned(),
            file_name: file_name.to_owned(),
        };
        let given = hex::decode(signature_hex).map_err(|_| LinkError::BadSignature)?;
        // Constant-time comparison.
        self.mac(key, expires, &meta)
            .verify_slice(&given)
            .map_err(|_| LinkError::BadSignature)?;
        if now.timestamp() > expires {
            return Err(LinkError::Expired);
        }
        let path = self.path_of(key).map_err(|_| LinkError::BadSignature)?;
        if !path.is_file() {
            return Err(LinkError::Gone);
        }
        Ok(VerifiedFile { path, meta })
    }
}

#[async_trait]
impl OutputStorage for LocalStorage {
    #[tracing::instrument(skip_all, fields(key))]
    async fn put_file(&self, key: &str, path: &Path, _meta: &ObjectMeta) -> Result<StoredOutput> {
        let dest = self.path_of(key)?;
        let src = path.to_owned();
        // One trip to the blocking pool for the whole store, not one per read and write.
        let stored = tokio::task::spawn_blocking({
            let dest = dest.clone();
            move || store_file(&src, &dest)
        })
        .await
        .map_err(|e| Error::storage(format!("storing {key}: the blocking task failed: {e}")))?;
        match stored {
            Ok((size, sha256)) => Ok(StoredOutput {
                key: key.to_owned(),
                location: dest.display().to_string(),
                size,
                sha256,
            }),
            Err(e) => Err(Error::storage_caused(format!("storing {key}: {e}"), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage_caused(format!("deleting {key}: {e}"), e)),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.path_of(key)?).await?)
    }

    async fn stored(&self, key: &str) -> Result<Option<StoredOutput>> {
        let path = self.path_of(key)?;
        // Files only appear under their key by a rename of a complete copy.
        match super::size_and_sha256(&path).await {
            Ok((size, sha256)) => Ok(Some(StoredOutput {
                key: key.to_owned(),
                location: path.display().to_string(),
                size,
                sha256: hex::encode(sha256),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage_caused(format!("reading {key}: {e}"), e)),
        }
    }

    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> Result<DownloadUrl> {
        self.path_of(key)?;
        let expires_at =
            Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires = expires_at.timestamp();
        let signature = hex::encode(self.mac(key, expires, meta).finalize().into_bytes());
        let mut url = self
            .public_url
            .join(&format!("files/{key}"))
            .map_err(|e| Error::Invalid(format!("download URL for {key}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("expires", &expires.to_string())
            .append_pair("content_type", &meta.content_type)
            .append_pair("file_name", &meta.file_name)
            .append_pair("signature", &signature);
        Ok(DownloadUrl {
            url: url.into(),
            expires_at: DateTime::from_timestamp(expires, 0).expect("a timestamp we just made"),
        })
    }

    /// A link is reusable when it points at this server and still verifies: after a move
    /// to another address or a signing-key rotation it does not.
    fn recognises_url(&self, url: &str) -> bool {
        let Some(rest) = url.strip_prefix(self.public_url.as_str()) else {
            return false;
        };
        let Some(key) = rest
            .split('?')
            .next()
            .and_then(|path| path.strip_prefix("files/"))
        else {
            return false;
        };
        let Ok(parsed) = Url::parse(url) else {
            return false;
        };
        let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        let field = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
        let Ok(expires) = field("expires").parse::<i64>() else {
            return false;
        };
        self.verify(
            key,
            expires,
            field("content_type"),
            field("file_name"),
            field("signature"),
            Utc::now(),
        )
        .is_ok()
    }

    async fn ping(&self) -> Result<()> {
        let probe = self.root.join(".quire-ping");
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }
}

/// Puts `src` at `dest` under a temporary name first, then renames: readers see no file or
/// the whole file, and a repeated put replaces it atomically. On the same file system the
/// temporary name is a hard link to `src` (the worker's rendered file, which nobody writes
/// again), so nothing is copied; otherwise the bytes are copied. Either way the file is
/// synced before the rename and hashed as stored. Returns its size and SHA-256 (hex).
fn store_file(src: &Path, dest: &Path) -> std::io::Result<(u64, String)> {
    let dir = dest
        .parent()
        .expect("a key always has a file name under the root");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        if std::fs::hard_link(src, &tmp).is_err() {
            std::fs::copy(src, &tmp)?;
        }
        let mut file = std::fs::File::open(&tmp)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        Ok((size, hex::encode(hasher.finalize())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path, key: u8) -> LocalStorage {
        LocalStorage::new(
            dir,
            "http://127.0.0.1:8080/".parse().expect("a URL"),
            vec![key; 32],
        )
        .expect("local storage")
    }

    #[tokio::test]
    async fn a_link_signed_with_a_rotated_key_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.csv");
        std::fs::write(&file, b"a,b\n").unwrap();
        let meta = ObjectMeta {
            content_type: "text/csv".into(),
            file_name: "r.csv".into(),
        };
        let old = storage(&dir.path().join("out"), 1);
        old.put_file("u/r.csv", &file, &meta).await.unwrap();
        let link = old
            .download_url("u/r.csv", &meta, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(old.recognises_url(&link.url));

        let rotated = storage(&dir.path().join("out"), 2);
        assert!(!rotated.recognises_url(&link.url));
    }
}
