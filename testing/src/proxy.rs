//! A TCP proxy that stages a dependency's outage, as the processes under test see it.
//!
//! Put it between a process and Postgres, SQS or S3 (point the process at [`FaultProxy::addr`],
//! or use [`FaultProxy::to_url`] / [`FaultProxy::to_postgres`]) and switch its [`Mode`]:
//!
//! - [`Mode::Pass`]: bytes flow both ways.
//! - [`Mode::Refuse`]: a stopped server. New connections are closed at once and open ones
//!   are cut.
//! - [`Mode::BlackHole`]: a black-holed network. Connections are accepted and then nothing
//!   is ever answered; open ones stall (their bytes are held, not passed on).
//!
//! Leaving an outage cuts the connections it held, as a network that comes back after a
//! long outage finds them dead.

use std::net::SocketAddr;

use sqlx::postgres::PgConnectOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    BlackHole,
}

/// A proxy to one upstream address; stops serving when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port to `upstream`, passing traffic.
    pub async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, _) = watch::channel(Mode::Pass);
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let current = *modes.borrow();
                let changes = modes.subscribe();
                tokio::spawn(async move {
                    match current {
                        Mode::Refuse => drop(client),
                        Mode::BlackHole => hold(client, changes).await,
                        Mode::Pass => relay(client, upstream, changes).await,
                    }
                });
            }
        });
        Self { addr, mode, task }
    }

    /// A proxy to the `host:port` of `url` (an `http://` endpoint or a `postgres://` URL),
    /// and `url` rewritten to go through it.
    pub async fn to_url(url: &str) -> (Self, String) {
        let mut parsed = url::Url::parse(url).expect("a URL with a host and port");
        let upstream = parsed
            .socket_addrs(|| None)
            .expect("the URL's host resolves")
            .into_iter()
            .next()
            .expect("the URL's host has an address");
        let proxy = Self::to(upstream).await;
        parsed
            .set_host(Some("127.0.0.1"))
            .expect("the URL takes a host");
        parsed
            .set_port(Some(proxy.addr.port()))
            .expect("the URL takes a port");
        (proxy, parsed.into())
    }

    /// A proxy to the Postgres server `options` connect to, and `options` rewritten to
    /// connect through it (same database, user and settings).
    pub async fn to_postgres(options: &PgConnectOptions) -> (Self, PgConnectOptions) {
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .expect("the database's host resolves")
            .next()
            .expect("the database's host has an address");
        let proxy = Self::to(upstream).await;
        let proxied = options.clone().host("127.0.0.1").port(proxy.addr.port());
        (proxy, proxied)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A black-holed connection: accepted, never answered, closed only when the outage ends.
async fn hold(client: TcpStream, mut changes: watch::Receiver<Mode>) {
    let _ = changes.wait_for(|mode| *mode != Mode::BlackHole).await;
    drop(client);
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut changes: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let outage = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        changed = changes.wait_for(|mode| *mode != Mode::Pass) => {
            changed.map(|mode| *mode).unwrap_or(Mode::Refuse)
        }
    };
    if outage == Mode::BlackHole {
        // Stall: nothing more passes in either direction until the outage ends.
        let _ = changes.wait_for(|mode| *mode != Mode::BlackHole).await;
    }
    let _ = client.shutdown().await;
}
