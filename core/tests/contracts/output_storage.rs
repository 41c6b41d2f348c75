//! The [`OutputStorage`] contract, run against `LocalStorage` and against `S3Storage` on a
//! fresh bucket of each AWS API emulator (moto and LocalStack in the test command).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{ProvideCredentials, SharedCredentialsProvider};
use chrono::{NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use quire_core::Result;
use quire_core::storage::{DownloadUrl, LocalStorage, ObjectMeta, OutputStorage, S3Storage};
use quire_testing::aws::Emulator;
use sha2::{Digest, Sha256};

/// Storage under test, plus what the contract needs beyond [`OutputStorage`]: following a
/// download link the way a browser would, forging one, and how an object was uploaded.
#[async_trait]
trait StorageUnderTest: OutputStorage {
    /// The bytes behind `url`, or `None` when the link is refused (expired, forged, gone).
    async fn follow(&self, url: &str) -> Option<Vec<u8>>;
    /// `link` altered to claim it lasts a day longer, without signing it again.
    fn with_later_expiry(&self, link: &DownloadUrl) -> String;
    /// How many parts the object under `key` was uploaded in, for backends that upload in
    /// parts (`None` for the others).
    async fn upload_parts(&self, key: &str) -> Result<Option<usize>>;
}

type Storage = Arc<dyn StorageUnderTest>;

/// `LocalStorage` links are served by the API's `/files/{key}` route, which checks them
/// with `LocalStorage::verify` and streams the file; `follow` does exactly that.
struct Local(LocalStorage);

#[async_trait]
impl OutputStorage for Local {
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        meta: &ObjectMeta,
    ) -> Result<quire_core::model::StoredOutput> {
        self.0.put_file(key, path, meta).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(key).await
    }
    async fn stored(&self, key: &str) -> Result<Option<quire_core::model::StoredOutput>> {
        self.0.stored(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> Result<quire_core::storage::DownloadUrl> {
        self.0.download_url(key, meta, ttl).await
    }
    fn recognises_url(&self, url: &str) -> bool {
        self.0.recognises_url(url)
    }
    async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }
}

#[async_trait]
impl StorageUnderTest for Local {
    async fn follow(&self, url: &str) -> Option<Vec<u8>> {
        let url = url::Url::parse(url).ok()?;
        let key = url.path().strip_prefix("/files/")?;
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let file = self
            .0
            .verify(
                key,
                query.get("expires")?.parse().ok()?,
                query.get("content_type")?,
                query.get("file_name")?,
                query.get("signature")?,
                Utc::now(),
            )
            .ok()?;
        tokio::fs::read(file.path).await.ok()
    }
    fn with_later_expiry(&self, link: &DownloadUrl) -> String {
        let expires = link.expires_at.timestamp();
        link.url
            .replace(&expires.to_string(), &(expires + 86_400).to_string())
    }
    async fn upload_parts(&self, _key: &str) -> Result<Option<usize>> {
        Ok(None)
    }
}

/// `S3Storage` on a fresh bucket, uploading in parts above 5 MiB (S3's smallest part).
///
/// `follow` is what a browser gets from S3. moto serves a presigned URL without checking
/// its signature or expiry (LocalStack checks both, as the test command starts it with
/// `S3_SKIP_SIGNATURE_VALIDATION=0`), so `follow` first checks the link the way S3 does
/// (SigV4 query authentication, [`S3::check_like_s3`]) and only then GETs it.
struct S3 {
    storage: S3Storage,
    client: aws_sdk_s3::Client,
    /// What signs the links, to check them with.
    credentials: SharedCredentialsProvider,
    http: reqwest::Client,
}

type HmacSha256 = Hmac<Sha256>;

impl S3 {
    async fn storage(emulator: Emulator) -> Storage {
        let storage = quire_testing::aws::fresh_bucket(emulator)
            .await
            .with_multipart_threshold(5 * 1024 * 1024);
        let config = quire_testing::aws::sdk_config(emulator).await;
        let client = quire_core::aws::s3_client(&config, true);
        let credentials = config
            .credentials_provider()
            .expect("the AWS configuration has credentials");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Arc::new(S3 {
            storage,
            client,
            credentials,
            http,
        })
    }

    /// True when `url` carries a valid SigV4 query signature (by this client's credentials)
    /// that has not expired: S3's check of a presigned GET.
    async fn check_like_s3(&self, url: &url::Url) -> bool {
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (
            Some("AWS4-HMAC-SHA256"),
            Some(credential),
            Some(date),
            Some(expires),
            Some("host"),
            Some(signature),
        ) = (
            param("X-Amz-Algorithm"),
            param("X-Amz-Credential"),
            param("X-Amz-Date"),
            param("X-Amz-Expires"),
            param("X-Amz-SignedHeaders"),
            param("X-Amz-Signature"),
        )
        else {
            return false;
        };
        let (Ok(signed_at), Ok(expires)) = (
            NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ"),
            expires.parse::<i64>(),
        ) else {
            return false;
        };
        if Utc::now() > signed_at.and_utc() + chrono::Duration::seconds(expires) {
            return false;
        }
        let Some((_, scope)) = credential.split_once('/') else {
            return false;
        };

        let mut canonical_query: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature")
            .map(|(k, v)| (uri_encode(k), uri_encode(v)))
            .collect();
        canonical_query.sort();
        let canonical_query = canonical_query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return false,
        };
        let canonical_request = format!(
            "GET\n{}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
            url.path()
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );

        let Ok(credentials) = self.credentials.provide_credentials().await else {
            return false;
        };
        let mut key = format!("AWS4{}", credentials.secret_access_key()).into_bytes();
        for part in scope.split('/') {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hmac(&key, string_to_sign.as_bytes());
        hex::decode(signature).is_ok_and(|given| given == expected)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[async_trait]
impl OutputStorage for S3 {
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        meta: &ObjectMeta,
    ) -> Result<quire_core::model::StoredOutput> {
        self.storage.put_file(key, path, meta).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.storage.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.storage.exists(key).await
    }
    async fn stored(&self, key: &str) -> Result<Option<quire_core::model::StoredOutput>> {
        self.storage.stored(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> Result<DownloadUrl> {
        self.storage.download_url(key, meta, ttl).await
    }
    fn recognises_url(&self, url: &str) -> bool {
        self.storage.recognises_url(url)
    }
    async fn ping(&self) -> Result<()> {
        self.storage.ping().await
    }
}

#[async_trait]
impl StorageUnderTest for S3 {
    async fn follow(&self, url: &str) -> Option<Vec<u8>> {
        let parsed = url::Url::parse(url).ok()?;
        if !self.check_like_s3(&parsed).await {
            return None;
        }
        let response = self.http.get(parsed).send().await.ok()?;
        if response.status() != reqwest::StatusCode::OK {
            return None;
        }
        response.bytes().await.ok().map(|b| b.to_vec())
    }
    fn with_later_expiry(&self, link: &DownloadUrl) -> String {
        let mut url = url::Url::parse(&link.url).expect("a link is a URL");
        let query: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(k, v)| match (k.as_str(), v.parse::<u64>()) {
                ("X-Amz-Expires", Ok(expires)) => (k, (expires + 86_400).to_string()),
                _ => (k, v),
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(query);
        url.into()
    }
    async fn upload_parts(&self, key: &str) -> Result<Option<usize>> {
        let head = self
            .client
            .head_object()
            .bucket(self.storage.bucket())
            .key(self.storage.object_key(key)?)
            .send()
            .await
            .map_err(|e| {
                quire_core::Error::storage(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
            })?;
        // A multipart object's ETag is `"<hash>-<parts>"`; a single upload's has no dash.
        let etag = head.e_tag().unwrap_or_default().trim_matches('"');
        Ok(Some(
            etag.rsplit_once('-')
                .and_then(|(_, parts)| parts.parse().ok())
                .unwrap_or(1),
        ))
    }
}

crate::contract_suite! {
    backends: {
        local: async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let storage = LocalStorage::new(
                dir.path().join("outputs"),
                "http://127.0.0.1:8080/".parse().expect("a URL"),
                vec![42; 32],
            )
            .expect("local storage");
            (Arc::new(Local(storage)) as Storage, dir)
        },
        s3: async { (S3::storage(Emulator::Moto).await, ()) },
        s3_localstack: async { (S3::storage(Emulator::LocalStack).await, ()) },
    },
    cases: [
        the_storage_answers_a_ping,
        a_stored_file_reports_its_size_and_checksum_and_exists,
        storing_under_the_same_key_again_replaces_the_object,
        a_download_link_serves_the_bytes_until_it_expires,
        a_tampered_link_is_refused,
        a_deleted_object_is_gone_and_deleting_again_succeeds,
        a_large_file_is_stored_intact,
        a_key_that_could_escape_is_refused,
        links_are_recognised_only_when_they_point_here,
        a_stored_object_is_found_whole_with_the_size_and_checksum_it_was_stored_with,
    ],
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        content_type: "text/csv; charset=utf-8".into(),
        file_name: "report.csv".into(),
    }
}

fn key() -> String {
    format!("{}/{}.csv", uuid::Uuid::now_v7(), uuid::Uuid::now_v7())
}

/// A file with `bytes` in a temporary directory (kept alive by the returned guard).
fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("out");
    std::fs::write(&path, bytes).expect("write the test file");
    (dir, path)
}

async fn the_storage_answers_a_ping(storage: Storage) -> Result<()> {
    storage.ping().await
}

async fn a_stored_file_reports_its_size_and_checksum_and_exists(storage: Storage) -> Result<()> {
    let (_dir, path) = file_with(b"id,name\n1,ada\n");
    let key = key();
    assert!(!storage.exists(&key).await?);
    let stored = storage.put_file(&key, &path, &meta()).await?;
    assert_eq!(stored.key, key);
    assert_eq!(stored.size, 14);
    assert_eq!(
        stored.sha256,
        hex::encode(Sha256::digest(b"id,name\n1,ada\n"))
    );
    assert!(storage.exists(&key).await?);
    Ok(())
}

async fn storing_under_the_same_key_again_replaces_the_object(storage: Storage) -> Result<()> {
    let key = key();
    let (_a, first) = file_with(b"first");
    let (_b, second) = file_with(b"second!");
    storage.put_file(&key, &first, &meta()).await?;
    let stored = storage.put_file(&key, &second, &meta()).await?;
    assert_eq!(stored.size, 7);
    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(60))
        .await?;
    assert_eq!(
        storage.follow(&link.url).await.as_deref(),
        Some(&b"second!"[..])
    );
    Ok(())
}

async fn a_download_link_serves_the_bytes_until_it_expires(storage: Storage) -> Result<()> {
    let key = key();
    let (_dir, path) = file_with(b"payload");
    storage.put_file(&key, &path, &meta()).await?;

    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(600))
        .await?;
    let expected = Utc::now() + chrono::Duration::seconds(600);
    assert!(
        (link.expires_at - expected).num_seconds().abs() <= 2,
        "{link:?}"
    );
    assert_eq!(
        storage.follow(&link.url).await.as_deref(),
        Some(&b"payload"[..])
    );

    let short = storage
        .download_url(&key, &meta(), Duration::from_secs(1))
        .await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        storage.follow(&short.url).await,
        None,
        "an expired link is refused"
    );
    Ok(())
}

async fn a_tampered_link_is_refused(storage: Storage) -> Result<()> {
    let key = key();
    let (_dir, path) = file_with(b"secret numbers");
    storage.put_file(&key, &path, &meta()).await?;
    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(60))
        .await?;
    // Push the expiry out by a day without re-signing.
    let forged = storage.with_later_expiry(&link);
    assert_ne!(forged, link.url);
    assert_eq!(storage.follow(&forged).await, None);
    Ok(())
}

async fn a_deleted_object_is_gone_and_deleting_again_succeeds(storage: Storage) -> Result<()> {
    let key = key();
    let (_dir, path) = file_with(b"bye");
    storage.put_file(&key, &path, &meta()).await?;
    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(60))
        .await?;
    storage.delete(&key).await?;
    assert!(!storage.exists(&key).await?);
    assert_eq!(storage.follow(&link.url).await, None);
    storage.delete(&key).await?;
    Ok(())
}

async fn a_large_file_is_stored_intact(storage: Storage) -> Result<()> {
    // 24 MiB of varied bytes: larger than any single buffer or upload part.
    let bytes: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (_dir, path) = file_with(&bytes);
    let key = key();
    let stored = storage.put_file(&key, &path, &meta()).await?;
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&bytes)));
    if let Some(parts) = storage.upload_parts(&key).await? {
        assert!(parts > 1, "uploaded in {parts} part(s)");
    }
    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(60))
        .await?;
    let fetched = storage.follow(&link.url).await.expect("the link works");
    assert!(fetched == bytes, "the bytes came back intact");
    Ok(())
}

async fn a_key_that_could_escape_is_refused(storage: Storage) -> Result<()> {
    let (_dir, path) = file_with(b"x");
    for bad in ["../escape.csv", "/etc/passwd", "a/../../b.csv", ""] {
        assert!(
            storage.put_file(bad, &path, &meta()).await.is_err(),
            "{bad:?} was accepted"
        );
    }
    Ok(())
}

async fn links_are_recognised_only_when_they_point_here(storage: Storage) -> Result<()> {
    let key = key();
    let (_dir, path) = file_with(b"x");
    storage.put_file(&key, &path, &meta()).await?;
    let link = storage
        .download_url(&key, &meta(), Duration::from_secs(60))
        .await?;
    assert!(storage.recognises_url(&link.url));
    assert!(!storage.recognises_url("http://elsewhere.example/files/a/b.csv"));
    Ok(())
}

async fn a_stored_object_is_found_whole_with_the_size_and_checksum_it_was_stored_with(
    storage: Storage,
) -> Result<()> {
    let key = key();
    assert_eq!(storage.stored(&key).await?, None, "nothing stored yet");
    // Large enough for S3Storage's multipart upload: the checksum must be the whole file's.
    let bytes: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (_dir, path) = file_with(&bytes);
    let put = storage.put_file(&key, &path, &meta()).await?;
    let found = storage
        .stored(&key)
        .await?
        .expect("the stored object is found");
    assert_eq!(found, put, "what a later attempt adopts is what was stored");
    assert_eq!(found.sha256, hex::encode(Sha256::digest(&bytes)));
    storage.delete(&key).await?;
    assert_eq!(storage.stored(&key).await?, None, "gone once deleted");
    Ok(())
}
