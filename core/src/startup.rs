//! What every Quire binary does at start, written once: the database settings and
//! connection ([`DatabaseArgs`]), the probe server ([`ProbeArgs`], one default port per
//! component so they can share a host), and the process's identity ([`identity`]).
//! Queue and storage settings are [`crate::backends::BackendArgs`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{PgStore, PoolSettings};
use crate::{Error, Result};

/// The worker's default probe port.
pub const WORKER_PROBE_PORT: u16 = 8081;
/// The controller's default probe (and metrics) port.
pub const CONTROLLER_PROBE_PORT: u16 = 8082;

/// The Postgres settings of the API server, the worker and the controller.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres URL of the record store (and of the database work queue).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<SecretString>,

    /// Largest database connection pool.
    #[arg(long, env = "QUIRE_DB_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub db_max_connections: u32,

    /// Longest a query waits for a database connection (`2s`, `500ms`): during an outage
    /// whatever needs the database fails within this long instead of hanging.
    #[arg(long, env = "QUIRE_DB_ACQUIRE_TIMEOUT", default_value = "2s",
          value_parser = crate::duration::parse, global = true)]
    pub db_acquire_timeout: Duration,
}

impl DatabaseArgs {
    /// The URL, or an error naming the setting. The URL may hold a password: it is never
    /// part of an error message.
    pub fn url(&self) -> Result<&str> {
        self.database_url
            .as_ref()
            .map(|url| url.expose_secret())
            .ok_or_else(|| Error::Invalid("DATABASE_URL (or --database-url) is required".into()))
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
        }
    }

    /// Connects to Postgres; fails fast when it cannot be reached.
    pub async fn connect(&self) -> Result<PgStore> {
        PgStore::connect(self.url()?, self.pool_settings()).await
    }
}

/// Where a background process (worker, controller) serves `/healthz` and `/readyz`.
#[derive(Clone, Debug, Args)]
pub struct ProbeArgs {
    /// Address of the `/healthz` and `/readyz` probes [default: 0.0.0.0:8081 for the
    /// worker, 0.0.0.0:8082 for the controller, which adds `/metrics`].
    #[arg(long, env = "QUIRE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
}

impl ProbeArgs {
    /// The address to listen on: the setting, else all interfaces on `default_port`.
    pub fn address(&self, default_port: u16) -> SocketAddr {
        self.health_listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, default_port)))
    }

    /// Binds the address and serves `routes` until `stop` fires.
    pub async fn serve(
        &self,
        default_port: u16,
        routes: Router,
        stop: CancellationToken,
    ) -> std::io::Result<ProbeServer> {
        let listener = tokio::net::TcpListener::bind(self.address(default_port)).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "probes listening");
        let task = tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(ProbeServer { address, task })
    }
}

/// A running probe server.
pub struct ProbeServer {
    pub address: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl ProbeServer {
    /// Waits until the server has stopped (its `stop` token fired) and says how it ended.
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// This process's name in logs, Leases and events: the host name (a pod's name in
/// Kubernetes), else `fallback` and a random suffix.
pub fn identity(fallback: &str) -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| format!("{fallback}-{}", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        probes: ProbeArgs,
    }

    #[test]
    fn each_component_has_its_own_default_probe_port() {
        let cli = Cli::try_parse_from(["test"]).expect("the defaults parse");
        assert_eq!(cli.probes.address(WORKER_PROBE_PORT).port(), 8081);
        assert_eq!(cli.probes.address(CONTROLLER_PROBE_PORT).port(), 8082);
        let cli = Cli::try_parse_from(["test", "--health-listen", "127.0.0.1:9000"]).unwrap();
        assert_eq!(
            cli.probes.address(CONTROLLER_PROBE_PORT),
            "127.0.0.1:9000".parse().unwrap()
        );
    }

    #[test]
    fn a_missing_database_url_is_named_without_a_secret() {
        let database = DatabaseArgs {
            database_url: None,
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(2),
        };
        let message = database.url().unwrap_err().to_string();
        assert!(message.contains("DATABASE_URL"), "{message}");
    }
}
