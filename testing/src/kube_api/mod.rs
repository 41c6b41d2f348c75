//! An in-process fake Kubernetes API server for controller integration tests.
//!
//! It speaks enough of the apiserver's HTTP API for `kube::Client`, kube-runtime's
//! `watcher`/`Controller`/finalizer helper/event `Recorder`, Lease-based leader election and
//! `kubectl get`/`wait`: discovery, CRUD with optimistic concurrency, the four patch types,
//! the status subresource, finalizers and deletion, list paging, watches with bookmarks,
//! `410 Gone` and streaming lists, server-side printing (`Table`) from a CRD's printer
//! columns, and CRD schema validation with `self == oldSelf` immutability.
//!
//! State lives in an [`ObjectStore`], which outlives servers: stop one and start another on
//! the same store to test a controller restart, or [`FakeApiServer::close_watches`] to cut
//! every watch as an apiserver restart would.
//!
//! ```no_run
//! # async fn example() {
//! use kube::api::{Api, PostParams};
//! use quire_testing::kube_api::FakeApiServer;
//!
//! let server = FakeApiServer::start().await;
//! let api: Api<quire_crds::ReportRequest> = Api::default_namespaced(server.client());
//! # let rr: quire_crds::ReportRequest = todo!();
//! api.create(&PostParams::default(), &rr).await.unwrap();
//! server.fail_next("PATCH", "/status", 1, 500);
//! assert_eq!(server.count_requests("POST", "/reportrequests"), 1);
//! # }
//! ```
//!
//! Not modelled: authentication and authorization, field ownership and conflicts of
//! server-side apply (apply merges maps and replaces lists), strategic-merge list
//! strategies for built-in kinds, garbage collection through owner references and
//! foreground/orphan propagation, namespace termination, conversion between versions
//! (including between `v1` and `events.k8s.io/v1` events), CEL rules other than
//! `self == oldSelf`, consistent snapshots across list pages, `resourceVersionMatch=Exact`.

mod errors;
mod http;
mod kubectl;
mod patch;
mod resources;
mod schema;
mod selector;
mod store;
mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::CustomResourceExt;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use errors::{ApiError, FieldError};
pub use http::RecordedRequest;
pub use kubectl::Kubectl;
pub use resources::{PrinterColumn, ResourceInfo};
pub use store::{DEFAULT_HISTORY_LIMIT, EventType, ObjectStore};
pub use table::human_duration;

impl ObjectStore {
    /// A store that serves the `ReportRequest` CRD besides the built-ins.
    pub fn with_report_requests() -> Self {
        let store = Self::new();
        store
            .register_crd(&quire_crds::ReportRequest::crd())
            .expect("the ReportRequest CRD registers in a fresh store");
        store
    }
}

/// A running fake apiserver on `127.0.0.1`. Dropping it stops it.
pub struct FakeApiServer {
    store: ObjectStore,
    app: Arc<http::AppState>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// A server on a free port with a fresh store serving `ReportRequest`s.
    pub async fn start() -> Self {
        Self::start_with(ObjectStore::with_report_requests()).await
    }

    /// A server on a free port over an existing store (e.g. one a stopped server used).
    pub async fn start_with(store: ObjectStore) -> Self {
        Self::start_on(store, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a free port on 127.0.0.1")
    }

    /// A server on a given address over a store.
    pub async fn start_on(store: ObjectStore, addr: SocketAddr) -> std::io::Result<Self> {
        let app = Arc::new(http::AppState::new(store.clone()));
        let mut server = Self {
            store,
            app,
            addr,
            shutdown: None,
            task: None,
        };
        server.listen(addr).await?;
        Ok(server)
    }

    async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.addr = listener.local_addr()?;
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(self.app.clone());
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        }));
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster state it serves.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// A `kube::Config` for it: no authentication, default namespace `default`.
    pub fn kube_config(&self) -> kube::Config {
        let uri = self
            .url()
            .parse()
            .expect("http://127.0.0.1:PORT is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_owned();
        config
    }

    /// A `kube::Client` for it. Call inside a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config())
            .expect("a client for a plain-HTTP cluster URL builds")
    }

    /// Writes a kubeconfig (context `fake`, namespace `default`) for `kubectl --kubeconfig`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
            "current-context": "fake",
            "preferences": {},
        });
        let yaml = serde_yaml_ng::to_string(&config).map_err(std::io::Error::other)?;
        std::fs::write(path, yaml)
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.requests()
    }

    /// How many requests had this method (`""` or `"*"`: any) and a path containing `path_contains`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| method.is_empty() || method == "*" || r.method.eq_ignore_ascii_case(method))
            .filter(|r| r.path.contains(path_contains))
            .count()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.app.clear_requests();
    }

    /// The next `times` requests with this method (`""` or `"*"`: any) whose path contains
    /// `path_contains` are answered with a `Status` of code `status` (500, 409, 429, …)
    /// instead of being served.
    pub fn fail_next(&self, method: &str, path_contains: &str, times: usize, status: u16) {
        self.app.fail_next(method, path_contains, times, status);
    }

    /// Drops every pending injected failure.
    pub fn clear_failures(&self) {
        self.app.clear_failures();
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 30 s);
    /// applies to watches started afterwards.
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.app.set_bookmark_interval(interval);
    }

    /// Ends every open watch stream of every server on this store, as an apiserver
    /// restart does; clients re-watch from their last `resourceVersion`.
    pub fn close_watches(&self) {
        self.store.close_watches();
    }

    async fn shut_down(&mut self) {
        self.app.close_own_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    /// Stops serving and hands back the store for a later server.
    pub async fn stop(mut self) -> ObjectStore {
        self.shut_down().await;
        self.store.clone()
    }

    /// Stops and starts again on the same port and store (open watches end, clients
    /// reconnect); the request log and injected failures are kept.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.shut_down().await;
        let addr = self.addr;
        let mut attempt = 0;
        loop {
            match self.listen(addr).await {
                Ok(()) => return Ok(()),
                Err(err) if attempt < 50 => {
                    attempt += 1;
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.app.close_own_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
