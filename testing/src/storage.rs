//! Output storage that runs a test's code around an upload, to stage what happens at that
//! moment (a cancel just before it, a crash just after it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use quire_core::model::StoredOutput;
use quire_core::storage::{DownloadUrl, ObjectMeta, OutputStorage};

type Hook = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Wraps an [`OutputStorage`]: every `put_file` first awaits the `before` hook, then the
/// upload, then (if it succeeded) the `after` hook; every other call goes straight through.
/// A hook that never finishes leaves the worker stuck at that point, as a crash would.
pub struct AroundPut {
    inner: Arc<dyn OutputStorage>,
    before: Hook,
    after: Hook,
}

impl AroundPut {
    pub fn new(inner: Arc<dyn OutputStorage>) -> Self {
        Self {
            inner,
            before: Box::new(|| Box::pin(async {})),
            after: Box::new(|| Box::pin(async {})),
        }
    }

    /// Runs `hook` before each upload.
    pub fn before_put<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.before = Box::new(move || Box::pin(hook()));
        self
    }

    /// Runs `hook` after each successful upload, before `put_file` returns.
    pub fn after_put<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.after = Box::new(move || Box::pin(hook()));
        self
    }
}

#[async_trait]
impl OutputStorage for AroundPut {
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        meta: &ObjectMeta,
    ) -> quire_core::Result<StoredOutput> {
        (self.before)().await;
        let stored = self.inner.put_file(key, path, meta).await?;
        (self.after)().await;
        Ok(stored)
    }
    async fn delete(&self, key: &str) -> quire_core::Result<()> {
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> quire_core::Result<bool> {
        self.inner.exists(key).await
    }
    async fn stored(&self, key: &str) -> quire_core::Result<Option<StoredOutput>> {
        self.inner.stored(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        meta: &ObjectMeta,
        ttl: Duration,
    ) -> quire_core::Result<DownloadUrl> {
        self.inner.download_url(key, meta, ttl).await
    }
    fn recognises_url(&self, url: &str) -> bool {
        self.inner.recognises_url(url)
    }
    async fn ping(&self) -> quire_core::Result<()> {
        self.inner.ping().await
    }
}
