//! [`OutputStorage`] in an S3 bucket (or an S3-compatible store), with presigned download
//! links.
//!
//! An output key `{user_id}/{report_id}.{ext}` is stored as the object `PREFIX/{key}` (or
//! `{key}` without a prefix). Objects carry the `Content-Type` and
//! `Content-Disposition: attachment; filename="…"` of their download, and their SHA-256 in
//! the `x-amz-meta-sha256` metadata.
//!
//! Uploads stream from disk. The file is read once first to learn its size and SHA-256;
//! files up to the multipart threshold (default [`DEFAULT_MULTIPART_THRESHOLD`]) are then
//! sent in one `PutObject` carrying that SHA-256, which S3 verifies; larger files are sent as
//! a multipart upload, one part at a time, each part read from its offset in the file, and
//! the upload is aborted if a part fails. (An upload cut short by the process dying is left
//! incomplete: give the bucket a lifecycle rule that aborts incomplete multipart uploads.)
//!
//! Download links are presigned `GetObject` URLs that also set the response's
//! `Content-Type` and `Content-Disposition`; S3 caps their lifetime at 7 days.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use chrono::DateTime;
use url::Url;

use super::{DownloadUrl, ObjectMeta, OutputStorage, size_and_sha256};
use crate::model::StoredOutput;
use crate::{Error, Result};

/// Files larger than this are uploaded in parts.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// S3's longest presigned URL lifetime.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Outputs in an S3 bucket; see the module docs.
#[derive(Debug)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    /// Without leading, trailing or doubled slashes; never empty.
    prefix: Option<String>,
    multipart_threshold: u64,
    /// Where this storage's links point, learned from the first link it signs.
    link_base: OnceLock<LinkBase>,
}

/// The part of a download link that says which endpoint, bucket and prefix it points at.
#[derive(Debug)]
struct LinkBase {
    origin: url::Origin,
    /// The URL path up to the output key: `/bucket/prefix/` (path style) or `/prefix/`.
    path: String,
}

impl S3Storage {
    /// Storage in `bucket`, under `prefix` when given (`"reports"`, `"/reports/"` and
    /// `"a//b"` mean `reports/…` and `a/b/…`).
    pub fn new(client: Client, bucket: String, prefix: Option<String>) -> Self {
        let prefix = prefix
            .map(|p| {
                p.split('/')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|p| !p.is_empty());
        Self {
            client,
            bucket,
            prefix,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            link_base: OnceLock::new(),
        }
    }

    /// Files larger than `bytes` are uploaded in parts of `bytes` (at least
    /// [`MIN_PART_SIZE`]) each. Default [`DEFAULT_MULTIPART_THRESHOLD`].
    pub fn with_multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key for an output key: `prefix/key`. Refuses keys that are not of the
    /// `{user_id}/{report_id}.{ext}` kind ([`check_key`](super::check_key)).
    pub fn object_key(&self, key: &str) -> Result<String> {
        super::check_key(key)?;
        Ok(match &self.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_owned(),
        })
    }

    fn part_size(&self, size: u64) -> u64 {
        self.multipart_threshold
            .max(MIN_PART_SIZE)
            .max(size.div_ceil(MAX_PARTS))
    }

    async fn put_single(
        &self,
        object_key: &str,
        path: &Path,
        meta: &ObjectMeta,
        size: u64,
        sha256: &[u8],
    ) -> Result<()> {
        let body = ByteStream::read_from()
            .path(path)
            .build()
            .await
            .map_err(|e| Error::storage_caused(format!("reading {}: {e}", path.display()), e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(object_key)
            .content_type(&meta.content_type)
            .content_disposition(content_disposition(&meta.file_name))
            .metadata("sha256", hex::encode(sha256))
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(sha256))
            .body(body)
            .send()
            .await
            .map_err(|e| storage_error("uploading", object_key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        object_key: &str,
        path: &Path,
        meta: &ObjectMeta,
        size: u64,
        sha256: &[u8],
    ) -> Result<()> {
        // The upload declares the checksum every part carries (CRC32, the SDK's default) and
        // the completion lists each part's. S3 refuses to complete an upload that declared
        // none when the parts list checksums (InvalidPart, "one or more of the specified
        // parts could not be found"); LocalStack does the same, moto accepts it.
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .content_type(&meta.content_type)
            .content_disposition(content_disposition(&meta.file_name))
            .metadata("sha256", hex::encode(sha256))
            .send()
            .await
            .map_err(|e| storage_error("starting a multipart upload of", object_key, e))?;
        let upload_id = upload.upload_id().ok_or_else(|| {
            Error::storage(format!(
                "starting a multipart upload of {object_key}: no upload id"
            ))
        })?;
        let result = self.upload_parts(object_key, upload_id, path, size).await;
        if result.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(object_key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(
                    key = object_key,
                    error = %DisplayErrorContext(&e),
                    "could not abort a failed multipart upload; a lifecycle rule must clean it up"
                );
            }
        }
        result
    }

    /// Uploads the file's parts one after the other, then completes the upload.
    async fn upload_parts(
        &self,
        object_key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
    ) -> Result<()> {
        let part_size = self.part_size(size);
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let length = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| {
                    Error::storage_caused(format!("reading {}: {e}", path.display()), e)
                })?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(object_key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .content_length(i64::try_from(length).unwrap_or(i64::MAX))
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    storage_error(&format!("uploading part {number} of"), object_key, e)
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .set_checksum_crc32(uploaded.checksum_crc32().map(str::to_owned))
                    .set_checksum_crc32_c(uploaded.checksum_crc32_c().map(str::to_owned))
                    .set_checksum_crc64_nvme(uploaded.checksum_crc64_nvme().map(str::to_owned))
                    .set_checksum_sha1(uploaded.checksum_sha1().map(str::to_owned))
                    .set_checksum_sha256(uploaded.checksum_sha256().map(str::to_owned))
                    .build(),
            );
            offset += length;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| storage_error("completing the multipart upload of", object_key, e))?;
        Ok(())
    }

    /// `HeadObject`, `None` for a missing object.
    async fn head(&self, object_key: &str) -> Result<Option<HeadObjectOutput>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(storage_error("looking up", object_key, e)),
        }
    }

    /// Remembers where links point, from the first one signed (`url` is the link for `key`).
    fn learn_link_base(&self, url: &str, key: &str) {
        if self.link_base.get().is_some() {
            return;
        }
        let Ok(url) = Url::parse(url) else { return };
        // Keys are validated to need no percent-encoding, so the path ends with the key.
        if let Some(path) = url.path().strip_suffix(key) {
            let _ = self.link_base.set(LinkBase {
                origin: url.origin(),
                path: path.to_owned(),
            });
        }
    }
}

#[async_trait]
impl OutputStorage for S3Storage {
    #[tracing::instrument(skip_all, fields(key))]
    async fn put_file(&self, key: &str, path: &Path, meta: &ObjectMeta) -> Result<StoredOutput> {
        let object_key = self.object_key(key)?;
        let (size, sha256) = size_and_sha256(path)
            .await
            .map_err(|e| Error::storage_caused(format!("reading {}: {e}", path.display()), e))?;
        if size > self.multipart_threshold {
            self.put_multipart(&object_key, path, meta, size, &sha256)
                .await?;
        } else {
            self.put_single(&object_key, path, meta, size, &sha256)
                .await?;
        }
        Ok(StoredOutput {
            key: key.to_owned(),
            location: format!("s3://{}/{object_key}", self.bucket),
            size,
            sha256: hex::encode(sha256),
        })
    }

    #[tracing::instrument(skip_all, fields(key))]
    async fn delete(&self, key: &str) -> Result<()> {
        let object_key = self.object_key(key)?;
        // S3 answers 204 for a missing object too.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|e| storage_error("deleting", &object_key, e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(key))]
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head(&self.object_key(key)?).await?.is_some())
    }

    /// `HeadObject`: the object's `Content-Length` and its `sha256` metadata, which every
    /// upload of ours carries. An object without it was not stored by Quire and is not
    /// adopted.
    #[tracing::instrument(skip_all, fields(key))]
    async fn stored(&self, key: &str) -> Result<Option<StoredOutput>> {
        let object_key = self.object_key(key)?;
        let Some(head) = self.head(&object_key).await? else {
            return Ok(None);
        };
        let sha256 = head
            .metadata()
            .and_then(|m| m.get("sha256"))
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let (Some(sha256), Some(size)) = (sha256, head.content_length()) else {
            return Ok(None);
        };
        Ok(Some(StoredOutput {
            key: key.to_owned(),
            location: format!("s3://{}/{object_key}", self.bucket),
            size: u64::try_from(size).unwrap_or(0),
            sha256: sha256.to_ascii_lowercase(),
        }))
    }

    #[tracing::instrument(skip_all, fields(key))]
    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> Result<DownloadUrl> {
        let object_key = self.object_key(key)?;
        // Whole seconds, as X-Amz-Expires and X-Amz-Date carry them.
        let ttl = Duration::from_secs(ttl.as_secs().clamp(1, MAX_LINK_TTL.as_secs()));
        let signed_at = UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
        let config = PresigningConfig::builder()
            .start_time(signed_at)
            .expires_in(ttl)
            .build()
            .map_err(|e| Error::Invalid(format!("download link for {key}: {e}")))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .response_content_type(&meta.content_type)
            .response_content_disposition(content_disposition(&meta.file_name))
            .presigned(config)
            .await
            .map_err(|e| storage_error("signing a download link for", &object_key, e))?;
        let url = presigned.uri().to_owned();
        self.learn_link_base(&url, key);
        let expires = signed_at + ttl;
        let expires_at = DateTime::from_timestamp(
            expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            0,
        )
        .ok_or_else(|| Error::Invalid(format!("download link for {key}: expiry out of range")))?;
        Ok(DownloadUrl { url, expires_at })
    }

    /// True when `url` points at this bucket and prefix on this endpoint. Which endpoint
    /// that is (virtual-hosted or path-style, custom endpoint or not) is only known by
    /// signing, so until this storage has signed a link it recognises none; the caller then
    /// signs a fresh one, which costs no request.
    fn recognises_url(&self, url: &str) -> bool {
        let Some(base) = self.link_base.get() else {
            return false;
        };
        Url::parse(url)
            .is_ok_and(|url| url.origin() == base.origin && url.path().starts_with(&base.path))
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| storage_error("reaching the bucket", &self.bucket, e))?;
        Ok(())
    }
}

/// An [`Error::Storage`] naming what failed, with the SDK error and its causes (which never
/// include credentials).
fn storage_error<E, R>(action: &str, object: &str, error: SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = format!("{action} {object}: {}", DisplayErrorContext(&error));
    Error::storage_caused(message, error)
}

/// `attachment; filename="…"`, with an RFC 6266 `filename*` for names that are not plain
/// ASCII (the plain `filename` then has `_` for each character it cannot carry).
fn content_disposition(file_name: &str) -> String {
    let plain: String = file_name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain == file_name {
        return format!("attachment; filename=\"{plain}\"");
    }
    let mut encoded = String::new();
    for byte in file_name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

    use super::*;

    /// A client that never needs the network: presigning is local.
    fn client(endpoint: &str) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        Client::from_conf(config)
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            content_type: "text/csv".into(),
            file_name: "report.csv".into(),
        }
    }

    #[test]
    fn object_keys_are_prefixed_without_doubled_slashes() {
        let storage = |prefix: Option<&str>| {
            S3Storage::new(
                client("http://127.0.0.1:9"),
                "b".into(),
                prefix.map(Into::into),
            )
        };
        let key = "u/r.csv";
        assert_eq!(storage(None).object_key(key).expect("valid"), "u/r.csv");
        assert_eq!(storage(Some("")).object_key(key).expect("valid"), "u/r.csv");
        assert_eq!(
            storage(Some("/")).object_key(key).expect("valid"),
            "u/r.csv"
        );
        assert_eq!(
            storage(Some("/out//puts/")).object_key(key).expect("valid"),
            "out/puts/u/r.csv"
        );
        for bad in [
            "",
            "/u/r.csv",
            "u//r.csv",
            "u/../r.csv",
            "u/r.csv/",
            "u/r?.csv",
        ] {
            assert!(storage(None).object_key(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn links_expire_after_the_ttl_capped_at_seven_days_and_override_the_response() {
        let storage = S3Storage::new(client("http://127.0.0.1:9"), "b".into(), None);
        let link = storage
            .download_url("u/r.csv", &meta(), Duration::from_secs(30 * 24 * 3600))
            .await
            .expect("a link");
        let lifetime = link.expires_at - chrono::Utc::now();
        assert!(lifetime <= chrono::Duration::days(7), "{link:?}");
        assert!(lifetime > chrono::Duration::days(7) - chrono::Duration::seconds(5));
        let url = Url::parse(&link.url).expect("a URL");
        let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["X-Amz-Expires"], "604800");
        assert_eq!(query["response-content-type"], "text/csv");
        assert_eq!(
            query["response-content-disposition"],
            r#"attachment; filename="report.csv""#
        );
        assert_eq!(url.path(), "/b/u/r.csv");
    }

    #[tokio::test]
    async fn links_are_recognised_by_endpoint_bucket_and_prefix() {
        let here = S3Storage::new(client("http://127.0.0.1:9"), "b".into(), Some("p".into()));
        let ttl = Duration::from_secs(60);
        // Nothing is recognised before this storage has signed a link of its own.
        let other_bucket =
            S3Storage::new(client("http://127.0.0.1:9"), "c".into(), Some("p".into()));
        let theirs = other_bucket
            .download_url("u/r.csv", &meta(), ttl)
            .await
            .expect("a link");
        assert!(!here.recognises_url(&theirs.url));

        let ours = here
            .download_url("u/r.csv", &meta(), ttl)
            .await
            .expect("a link");
        assert!(here.recognises_url(&ours.url));
        assert!(!here.recognises_url(&theirs.url), "another bucket");
        let other_prefix =
            S3Storage::new(client("http://127.0.0.1:9"), "b".into(), Some("q".into()));
        let moved = other_prefix
            .download_url("u/r.csv", &meta(), ttl)
            .await
            .expect("a link");
        assert!(!here.recognises_url(&moved.url), "another prefix");
        let other_endpoint =
            S3Storage::new(client("http://127.0.0.1:10"), "b".into(), Some("p".into()));
        let elsewhere = other_endpoint
            .download_url("u/r.csv", &meta(), ttl)
            .await
            .expect("a link");
        assert!(!here.recognises_url(&elsewhere.url), "another endpoint");
        assert!(!here.recognises_url("not a url"));
    }

    #[test]
    fn content_disposition_quotes_plain_names_and_encodes_others() {
        assert_eq!(
            content_disposition("quire-profile-1.pdf"),
            r#"attachment; filename="quire-profile-1.pdf""#
        );
        assert_eq!(
            content_disposition("r\u{e9}sum\u{e9} \"1\".csv"),
            "attachment; filename=\"r_sum_ _1_.csv\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.csv"
        );
    }
}
