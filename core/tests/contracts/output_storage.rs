//! The [`OutputStorage`] contract, run against `LocalStorage`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use quire_core::Result;
use quire_core::storage::{LocalStorage, ObjectMeta, OutputStorage};
use sha2::{Digest, Sha256};

/// Storage under test, plus the one thing the contract needs beyond [`OutputStorage`]:
/// following a download link the way a browser would.
#[async_trait]
trait StorageUnderTest: OutputStorage {
    /// The bytes behind `url`, or `None` when the link is refused (expired, forged, gone).
    async fn follow(&self, url: &str) -> Option<Vec<u8>>;
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
    let expires = link.expires_at.timestamp();
    let forged = link
        .url
        .replace(&expires.to_string(), &(expires + 86_400).to_string());
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
