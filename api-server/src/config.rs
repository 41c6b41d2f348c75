//! The `api-server` binary's configuration: one flag per setting, each mirrored by an
//! environment variable. Secrets are [`SecretString`]s, hidden from `--help` and `Debug`,
//! and validated after parsing so that no error message ever repeats them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use quire_api::ApiConfig;
use quire_core::backends::BackendArgs;
use quire_core::keys::DOWNLOAD_LINKS;
use quire_core::startup::DatabaseArgs;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Shortest accepted JWT secret and download signing key, in bytes.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Parser)]
#[command(name = "api-server", version, about = "Quire's REST API server")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Postgres (DATABASE_URL, QUIRE_DB_MAX_CONNECTIONS, QUIRE_DB_ACQUIRE_TIMEOUT).
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address to listen on.
    #[arg(long, env = "QUIRE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// HMAC key of access tokens; at least 32 bytes.
    #[arg(long, env = "QUIRE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Base URL clients reach this server at, for local download links
    /// [default: http:// and the listen address, 0.0.0.0 becoming 127.0.0.1].
    #[arg(long, env = "QUIRE_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// Work queue and output storage (QUIRE_QUEUE, QUIRE_STORAGE, …).
    #[command(flatten)]
    pub backends: BackendArgs,

    /// Lifetime of download links, in seconds (at most 7 days).
    #[arg(long, env = "QUIRE_DOWNLOAD_URL_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub download_url_ttl: u64,

    /// HMAC key of local download links, at least 32 bytes [default: derived from the JWT secret].
    #[arg(long, env = "QUIRE_DOWNLOAD_SIGNING_KEY", hide_env_values = true)]
    pub download_signing_key: Option<SecretString>,

    /// Absolute lifetime of a sign-in's refresh tokens, however often they are rotated
    /// (`90d`, `12h`).
    #[arg(long, env = "QUIRE_REFRESH_FAMILY_TTL", default_value = "90d",
          value_parser = quire_core::duration::parse)]
    pub refresh_family_ttl: Duration,

    /// Proxies (CIDR blocks or addresses, comma-separated) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client, e.g. the Ingress controller's pod network
    /// [default: none; the TCP peer is the client].
    #[arg(long, env = "QUIRE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Sign-ups allowed per client address per hour (0 disables the limit).
    #[arg(long, env = "QUIRE_SIGNUP_PER_ADDRESS_PER_HOUR", default_value_t = 20)]
    pub signup_per_address_per_hour: u32,

    /// Unfinished reports (pending, queued or running) a user may have at once; more are
    /// refused with 429 (0 disables the limit).
    #[arg(long, env = "QUIRE_QUOTA_UNFINISHED", default_value_t = 20)]
    pub quota_unfinished: u32,

    /// Reports a user may create per hour; more are refused with 429 (0 disables the limit).
    #[arg(long, env = "QUIRE_QUOTA_PER_HOUR", default_value_t = 500)]
    pub quota_per_hour: u32,

    /// Longest a request may be held by `Prefer: wait=N` (e.g. `60s`, `2m`; 0 turns waiting
    /// off).
    #[arg(long, env = "QUIRE_MAX_WAIT", default_value = "60s",
          value_parser = quire_core::duration::parse)]
    pub max_wait: Duration,

    /// The operator's data sources (TOML, the worker's file): the API lists their names,
    /// titles and columns and refuses dataset reports naming any other.
    #[arg(long, env = "QUIRE_DATA_SOURCES_FILE")]
    pub data_sources_file: Option<std::path::PathBuf>,

    /// How long finished outputs and reports are kept, and how often that is enforced
    /// (QUIRE_OUTPUT_RETENTION, QUIRE_RECORD_RETENTION, QUIRE_RETENTION_INTERVAL).
    #[command(flatten)]
    pub retention: quire_core::retention::RetentionArgs,

    /// Completion webhooks (QUIRE_WEBHOOK_ALLOW_PRIVATE, QUIRE_WEBHOOK_RETRY_FOR,
    /// QUIRE_WEBHOOK_FIRST_RETRY).
    #[command(flatten)]
    pub webhooks: quire_api::webhooks::WebhookArgs,

    /// bcrypt cost of password hashes (4–31).
    #[arg(long, env = "QUIRE_BCRYPT_COST", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Who dispatches reports: `builtin` (this server, with a sweep for `pending` ones) or
    /// `kubernetes` (each report becomes a ReportRequest; the controller dispatches it).
    #[arg(long, env = "QUIRE_ORCHESTRATOR", value_enum, default_value_t = Orchestrator::Builtin)]
    pub orchestrator: Orchestrator,

    /// Namespace of the ReportRequests in kubernetes mode
    /// [default: the pod's namespace, or the kubeconfig context's, else `default`].
    #[arg(long, env = "QUIRE_NAMESPACE")]
    pub namespace: Option<String>,

    /// `ttlSecondsAfterFinished` of the ReportRequests this server creates in kubernetes
    /// mode (`1h`, `3600`; `0`: kept until deleted). The resource goes then; its output
    /// stays for QUIRE_OUTPUT_RETENTION.
    #[arg(long, env = "QUIRE_REPORT_REQUEST_TTL", default_value = "1h",
          value_parser = quire_core::duration::parse)]
    pub report_request_ttl: Duration,

    /// Reports still `pending` after this many seconds are dispatched again, checked as often
    /// (builtin orchestrator only).
    #[arg(long, env = "QUIRE_PENDING_SWEEP_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pending_sweep_secs: u64,

    /// Attempts, report age and the rescue of stranded reports (builtin orchestrator only).
    #[command(flatten)]
    pub rescue: quire_core::dispatch::RescueArgs,

    /// Do not apply database migrations at start.
    #[arg(long)]
    pub no_migrate: bool,

    /// Apply database migrations at start (`QUIRE_MIGRATE=false` is `--no-migrate`).
    #[arg(long, env = "QUIRE_MIGRATE", default_value_t = true, action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), hide = true)]
    pub migrate: bool,
}

/// `QUIRE_ORCHESTRATOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Orchestrator {
    /// The API server dispatches to the work queue itself and sweeps `pending` reports.
    Builtin,
    /// Cluster mode: the API server creates ReportRequests; the controller dispatches.
    Kubernetes,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (`GET /openapi.json`) and exit.
    Openapi,
}

impl Config {
    pub fn should_migrate(&self) -> bool {
        self.migrate && !self.no_migrate
    }

    /// `QUIRE_NAMESPACE` if given, checked to be a namespace name (an RFC 1123 label), so a
    /// typo fails at start rather than on the first report.
    pub fn namespace(&self) -> anyhow::Result<Option<&str>> {
        let Some(namespace) = self.namespace.as_deref() else {
            return Ok(None);
        };
        let bytes = namespace.as_bytes();
        let valid = (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
        ensure!(
            valid,
            "QUIRE_NAMESPACE `{namespace}` is not a namespace name: at most 63 lowercase \
             letters, digits and `-`, starting and ending with a letter or digit"
        );
        Ok(Some(namespace))
    }

    fn jwt_secret(&self) -> anyhow::Result<&SecretString> {
        let secret = self
            .jwt_secret
            .as_ref()
            .context("QUIRE_JWT_SECRET (or --jwt-secret) is required")?;
        ensure!(
            secret.expose_secret().len() >= MIN_SECRET_BYTES,
            "QUIRE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long"
        );
        Ok(secret)
    }

    /// The library configuration.
    pub fn api_config(&self) -> anyhow::Result<ApiConfig> {
        let mut config = ApiConfig::new(self.jwt_secret()?.clone());
        config.bcrypt_cost = self.bcrypt_cost;
        config.download_url_ttl = Duration::from_secs(self.download_url_ttl);
        config.refresh_family_ttl = self.refresh_family_ttl;
        config.trusted_proxies = self.trusted_proxies.clone();
        config.signup_per_address_per_hour = self.signup_per_address_per_hour;
        config.quota_unfinished = self.quota_unfinished;
        config.quota_per_hour = self.quota_per_hour;
        config.max_wait = self.max_wait;
        if let Some(path) = &self.data_sources_file {
            config.data_sources = quire_render::DataSources::from_file(path)
                .with_context(|| format!("loading data sources from {}", path.display()))?;
        }
        config.webhooks = self.webhooks.settings();
        Ok(config)
    }

    /// The key local download links are signed with: `QUIRE_DOWNLOAD_SIGNING_KEY`, or
    /// HMAC-SHA256 of a fixed label under the JWT secret, so one secret suffices.
    pub fn download_signing_key(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(key) = &self.download_signing_key {
            ensure!(
                key.expose_secret().len() >= MIN_SECRET_BYTES,
                "QUIRE_DOWNLOAD_SIGNING_KEY must be at least {MIN_SECRET_BYTES} bytes long"
            );
            return Ok(key.expose_secret().as_bytes().to_vec());
        }
        Ok(quire_core::derive_key(
            self.jwt_secret()?.expose_secret().as_bytes(),
            DOWNLOAD_LINKS,
        ))
    }

    /// `QUIRE_PUBLIC_URL`, or `http://<listen>` with an unspecified address replaced by
    /// loopback; always ending in `/` so that `files/…` joins below it.
    pub fn public_url(&self) -> anyhow::Result<Url> {
        let mut url = match &self.public_url {
            Some(url) => url.clone(),
            None => {
                let ip = match self.listen.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                let addr = SocketAddr::new(ip, self.listen.port());
                Url::parse(&format!("http://{addr}/")).context("building the default public URL")?
            }
        };
        ensure!(
            matches!(url.scheme(), "http" | "https"),
            "QUIRE_PUBLIC_URL must be an http:// or https:// URL"
        );
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }
}

/// A CIDR block, or a single address as its /32 or /128.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not a CIDR block (10.0.0.0/8) or an address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("api-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_public_url_defaults_to_loopback_on_the_listen_port() {
        let config = parse(&["--listen", "0.0.0.0:9000"]);
        assert_eq!(
            config.public_url().unwrap().as_str(),
            "http://127.0.0.1:9000/"
        );
        let config = parse(&["--public-url", "https://quire.example.com/api"]);
        assert_eq!(
            config.public_url().unwrap().as_str(),
            "https://quire.example.com/api/"
        );
    }

    #[test]
    fn quotas_retention_and_the_report_request_ttl_have_their_documented_defaults() {
        let defaults = parse(&[]);
        assert_eq!(
            (defaults.quota_unfinished, defaults.quota_per_hour),
            (20, 500)
        );
        assert_eq!(defaults.report_request_ttl, Duration::from_secs(3600));
        assert_eq!(
            defaults.retention.policy(),
            quire_core::retention::RetentionPolicy::default()
        );
        let set = parse(&[
            "--jwt-secret",
            "a secret of at least thirty-two bytes",
            "--quota-unfinished",
            "0",
            "--quota-per-hour",
            "50",
            "--report-request-ttl",
            "15m",
            "--output-retention",
            "12h",
        ]);
        let config = set.api_config().unwrap();
        assert_eq!(config.quota().unfinished, None, "0 disables the limit");
        assert_eq!(config.quota().per_hour, Some(50));
        assert_eq!(set.report_request_ttl, Duration::from_secs(900));
        assert_eq!(
            set.retention.policy().outputs,
            Some(Duration::from_secs(12 * 3600))
        );
    }

    #[test]
    fn a_short_jwt_secret_is_refused_without_repeating_it() {
        let config = parse(&["--jwt-secret", "tooshort-secret-value"]);
        let message = config.api_config().unwrap_err().to_string();
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(!message.contains("tooshort"), "{message}");
    }

    #[test]
    fn the_download_key_is_derived_from_the_jwt_secret_unless_given() {
        let secret = "s".repeat(32);
        let derived = parse(&["--jwt-secret", &secret])
            .download_signing_key()
            .unwrap();
        assert_eq!(derived.len(), 32);
        assert_ne!(derived, secret.as_bytes());
        let given = "d".repeat(40);
        let config = parse(&["--jwt-secret", &secret, "--download-signing-key", &given]);
        assert_eq!(config.download_signing_key().unwrap(), given.as_bytes());
    }

    #[test]
    fn migrations_can_be_skipped_by_flag() {
        assert!(parse(&[]).should_migrate());
        assert!(!parse(&["--no-migrate"]).should_migrate());
        assert!(!parse(&["--migrate", "false"]).should_migrate());
    }

    #[test]
    fn backend_settings_are_shared_with_the_other_binaries() {
        let config = parse(&["--queue", "sqs"]);
        let message = config.backends.validate().unwrap_err().to_string();
        assert!(message.contains("QUIRE_SQS_QUEUE_URL"), "{message}");
        assert!(parse(&[]).backends.validate().is_ok());
    }

    #[test]
    fn the_orchestrator_is_builtin_unless_kubernetes_is_asked_for() {
        let config = parse(&[]);
        assert_eq!(config.orchestrator, Orchestrator::Builtin);
        assert_eq!(config.namespace().unwrap(), None);
        let config = parse(&["--orchestrator", "kubernetes", "--namespace", "reports-1"]);
        assert_eq!(config.orchestrator, Orchestrator::Kubernetes);
        assert_eq!(config.namespace().unwrap(), Some("reports-1"));
        assert!(Config::try_parse_from(["api-server", "--orchestrator", "nomad"]).is_err());
    }

    #[test]
    fn the_orchestrator_and_namespace_come_from_the_environment() {
        let command = <Config as clap::CommandFactory>::command();
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .and_then(|arg| arg.get_env())
                .map(|name| name.to_string_lossy().into_owned())
        };
        assert_eq!(env("orchestrator").as_deref(), Some("QUIRE_ORCHESTRATOR"));
        assert_eq!(env("namespace").as_deref(), Some("QUIRE_NAMESPACE"));
    }

    #[test]
    fn a_namespace_that_is_not_a_label_is_refused() {
        for bad in [
            "",
            "Reports",
            "reports_1",
            "-reports",
            "reports-",
            &"n".repeat(64),
        ] {
            let config = parse(&[&format!("--namespace={bad}")]);
            let message = config.namespace().unwrap_err().to_string();
            assert!(message.contains("QUIRE_NAMESPACE"), "{message}");
        }
        assert!(parse(&["--namespace", &"n".repeat(63)]).namespace().is_ok());
    }

    #[test]
    fn trusted_proxies_are_cidr_blocks_or_addresses() {
        assert!(parse(&[]).trusted_proxies.is_empty(), "none by default");
        let config = parse(&["--trusted-proxies", "10.0.0.0/8, 192.0.2.7,fd00::/8"]);
        let nets: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        assert!(Config::try_parse_from(["api-server", "--trusted-proxies", "ingress"]).is_err());
    }

    #[test]
    fn refresh_families_last_ninety_days_unless_configured() {
        let config = parse(&["--jwt-secret", &"s".repeat(32)]);
        assert_eq!(
            config.api_config().unwrap().refresh_family_ttl,
            Duration::from_secs(90 * 86_400)
        );
        let config = parse(&[
            "--jwt-secret",
            &"s".repeat(32),
            "--refresh-family-ttl",
            "7d",
        ]);
        assert_eq!(
            config.api_config().unwrap().refresh_family_ttl,
            Duration::from_secs(7 * 86_400)
        );
    }

    #[test]
    fn webhooks_go_to_public_https_destinations_unless_private_ones_are_allowed() {
        let secret = "s".repeat(32);
        let strict = parse(&["--jwt-secret", &secret]).api_config().unwrap();
        assert_eq!(
            strict.webhooks,
            quire_api::webhooks::WebhookSettings::default()
        );
        assert!(!strict.webhooks.allow_private);
        assert_eq!(strict.webhooks.retry_for, Duration::from_secs(24 * 3600));
        let dev = parse(&[
            "--jwt-secret",
            &secret,
            "--webhook-allow-private",
            "true",
            "--webhook-retry-for",
            "10m",
            "--webhook-first-retry",
            "1s",
        ])
        .api_config()
        .unwrap();
        assert!(dev.webhooks.allow_private);
        assert_eq!(dev.webhooks.retry_for, Duration::from_secs(600));
        assert_eq!(dev.webhooks.first_retry, Duration::from_secs(1));
    }

    #[test]
    fn download_links_last_at_most_seven_days() {
        assert_eq!(parse(&[]).download_url_ttl, 900);
        assert!(Config::try_parse_from(["api-server", "--download-url-ttl", "604801"]).is_err());
    }
}
