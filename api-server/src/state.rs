//! What every handler can reach: the configuration, the seams to the rest of Quire and the
//! authentication machinery built from the configuration once at start.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use quire_core::metrics::{Exposition, QueueMetrics, RetentionMetrics};
use quire_core::model::Quota;
use quire_core::orchestrator::Orchestrator;
use quire_core::queue::WorkQueue;
use quire_core::storage::{LocalStorage, OutputStorage};
use quire_core::store::RecordStore;
use quire_core::store::changes::ReportChanges;
use quire_render::DataSources;
use secrecy::SecretString;

use crate::auth::password::{MAX_BCRYPT_COST, MIN_BCRYPT_COST};
use crate::auth::{AccessTokens, PasswordHasher, SigninLimiter};
use crate::http::metrics::ApiMetrics;
use crate::webhooks::WebhookSettings;

/// Longest lifetime of a download link, the same ceiling as an S3 presigned URL.
pub const MAX_DOWNLOAD_URL_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How the API behaves. Build it with [`ApiConfig::new`] and override fields as needed.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// HMAC key of the access tokens (HS256). At least 32 bytes in production.
    pub jwt_secret: SecretString,
    /// `iss` of the access tokens.
    pub issuer: String,
    /// `aud` of the access tokens.
    pub audience: String,
    pub access_token_ttl: Duration,
    /// Lifetime of one refresh token; each rotation issues a new one.
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a refresh-token family (one sign-in and all its rotations).
    pub refresh_family_ttl: Duration,
    /// bcrypt work factor (4–31).
    pub bcrypt_cost: u32,
    /// How many password hashes may be computed at once.
    pub hash_concurrency: usize,
    /// How many password hashes of each priority may wait for a turn; past that the API
    /// answers 503 at once.
    pub hash_queue: usize,
    /// Lifetime of a download link (at most [`MAX_DOWNLOAD_URL_TTL`]).
    pub download_url_ttl: Duration,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Sign-in attempts allowed per account (normalised email) per minute; 0 disables.
    pub signin_per_account_per_minute: u32,
    /// Sign-in attempts allowed per client address per minute; 0 disables.
    pub signin_per_address_per_minute: u32,
    /// Sign-ups allowed per client address per hour; 0 disables.
    pub signup_per_address_per_hour: u32,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client (see
    /// [`crate::http::client`]); none by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A request that has not produced a response by then is answered 503.
    pub request_timeout: Duration,
    /// Unfinished reports a user may have at once; 0 is no limit.
    pub quota_unfinished: u32,
    /// Reports a user may create per hour; 0 is no limit.
    pub quota_per_hour: u32,
    /// Longest a request may be held by `Prefer: wait=N`; zero turns waiting off.
    pub max_wait: Duration,
    /// The operator's data sources: listed at `GET /data-sources` (names, titles and
    /// columns only), and a dataset report naming any other is refused.
    pub data_sources: DataSources,
    /// Completion webhooks: allowed destinations, retries, the per-user cap.
    pub webhooks: WebhookSettings,
}

impl ApiConfig {
    /// The defaults: 15-minute access tokens, 30-day refresh tokens in families of at most
    /// 90 days, bcrypt cost 12, one concurrent hash per CPU with 8 per CPU waiting,
    /// 15-minute download links, 64 KiB bodies, 5 sign-ins per account and address and 20
    /// per address each minute, 20 sign-ups per address an hour, no trusted proxies,
    /// 30-second request timeout, 20 unfinished reports and 500 an hour per user, requests
    /// held by `Prefer: wait` up to 60 seconds, no data sources, and webhooks to public
    /// https destinations only (see [`WebhookSettings::default`]).
    pub fn new(jwt_secret: SecretString) -> Self {
        Self {
            jwt_secret,
            issuer: "quire".to_owned(),
            audience: "quire-api".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            refresh_family_ttl: Duration::from_secs(90 * 24 * 60 * 60),
            bcrypt_cost: 12,
            hash_concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hash_queue: 8 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            download_url_ttl: Duration::from_secs(15 * 60),
            body_limit: 64 * 1024,
            signin_per_account_per_minute: 5,
            signin_per_address_per_minute: 20,
            signup_per_address_per_hour: 20,
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(30),
            quota_unfinished: 20,
            quota_per_hour: 500,
            max_wait: Duration::from_secs(60),
            data_sources: DataSources::empty(),
            webhooks: WebhookSettings::default(),
        }
    }

    /// The per-user quota these settings give.
    pub fn quota(&self) -> Quota {
        let limit = |n: u32| (n > 0).then_some(n);
        Quota {
            unfinished: limit(self.quota_unfinished),
            per_hour: limit(self.quota_per_hour),
        }
    }
}

/// Shared state of every handler. Cloning is cheap: everything sits behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ApiConfig,
    store: Arc<dyn RecordStore>,
    orchestrator: Arc<dyn Orchestrator>,
    storage: Arc<dyn OutputStorage>,
    queue: Arc<dyn WorkQueue>,
    local_files: Option<Arc<LocalStorage>>,
    access_tokens: AccessTokens,
    hasher: PasswordHasher,
    signin_limiter: SigninLimiter,
    metrics: ApiMetrics,
    queue_metrics: QueueMetrics,
    retention_metrics: RetentionMetrics,
    exposition: Exposition,
    report_changes: ReportChanges,
}

impl AppState {
    /// Builds the state. Out-of-range settings are brought into range (bcrypt cost 4–31, at
    /// least one concurrent hash, download links between 1 second and 7 days).
    ///
    /// Computes the dummy password hash used to answer unknown emails in constant time, so
    /// this takes as long as one bcrypt hash at the configured cost.
    ///
    /// `orchestrator` takes new reports to a worker (built in, or through the cluster);
    /// `queue` is only used by the readiness check; `local_files` enables `GET /files/…`.
    pub fn new(
        mut config: ApiConfig,
        store: Arc<dyn RecordStore>,
        orchestrator: Arc<dyn Orchestrator>,
        storage: Arc<dyn OutputStorage>,
        queue: Arc<dyn WorkQueue>,
        local_files: Option<Arc<LocalStorage>>,
    ) -> Self {
        config.bcrypt_cost = config.bcrypt_cost.clamp(MIN_BCRYPT_COST, MAX_BCRYPT_COST);
        config.hash_concurrency = config.hash_concurrency.max(1);
        config.download_url_ttl = config
            .download_url_ttl
            .clamp(Duration::from_secs(1), MAX_DOWNLOAD_URL_TTL);
        let access_tokens = AccessTokens::new(
            &config.jwt_secret,
            &config.issuer,
            &config.audience,
            config.access_token_ttl,
        );
        let hasher = PasswordHasher::new(
            config.bcrypt_cost,
            config.hash_concurrency,
            config.hash_queue,
        );
        let signin_limiter = SigninLimiter::new(
            config.signin_per_account_per_minute,
            config.signin_per_address_per_minute,
        )
        .with_signups_per_hour(config.signup_per_address_per_hour);
        let (metrics, queue_metrics, retention_metrics) = Default::default();
        let mut registry = Registry::default();
        ApiMetrics::register(&metrics, &mut registry);
        QueueMetrics::register(&queue_metrics, &mut registry);
        RetentionMetrics::register(&retention_metrics, &mut registry);
        Self {
            inner: Arc::new(Inner {
                config,
                orchestrator,
                storage,
                queue,
                local_files,
                access_tokens,
                hasher,
                signin_limiter,
                metrics,
                queue_metrics,
                retention_metrics,
                exposition: Exposition::new(registry),
                report_changes: ReportChanges::new(store.change_feed()),
                store,
            }),
        }
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn RecordStore> {
        &self.inner.store
    }

    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.inner.orchestrator
    }

    pub fn storage(&self) -> &Arc<dyn OutputStorage> {
        &self.inner.storage
    }

    pub fn queue(&self) -> &Arc<dyn WorkQueue> {
        &self.inner.queue
    }

    pub fn local_files(&self) -> Option<&Arc<LocalStorage>> {
        self.inner.local_files.as_ref()
    }

    pub fn access_tokens(&self) -> &AccessTokens {
        &self.inner.access_tokens
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.inner.hasher
    }

    pub fn signin_limiter(&self) -> &SigninLimiter {
        &self.inner.signin_limiter
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    /// The queue-depth gauges this process exports: sample them with
    /// [`QueueMetrics::sample_periodically`].
    pub fn queue_metrics(&self) -> &QueueMetrics {
        &self.inner.queue_metrics
    }

    /// The counters of the retention pass ([`quire_core::retention`]) this process runs.
    pub fn retention_metrics(&self) -> &RetentionMetrics {
        &self.inner.retention_metrics
    }

    /// What `GET /metrics` serves: the API's registry, plus any [`Exposition::add`]s
    /// (`quire dev` adds its worker's).
    pub fn exposition(&self) -> &Exposition {
        &self.inner.exposition
    }

    /// Wake-ups when a report changes, for requests held by `Prefer: wait`.
    pub fn report_changes(&self) -> &ReportChanges {
        &self.inner.report_changes
    }
}
