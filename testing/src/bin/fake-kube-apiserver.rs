//! `fake-kube-apiserver`: the test suite's fake Kubernetes API server, standalone, for
//! trying a controller or `kubectl` by hand.
//!
//! ```text
//! fake-kube-apiserver [--port N] [--kubeconfig PATH]
//! kubectl --kubeconfig PATH get reportrequests
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use quire_testing::kube_api::{FakeApiServer, ObjectStore};

const USAGE: &str = "usage: fake-kube-apiserver [--port N] [--kubeconfig PATH]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut port: u16 = 0;
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => match value.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("--port: not a port number: {value}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            ("--kubeconfig", Some(value)) => kubeconfig = Some(PathBuf::from(value)),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = match FakeApiServer::start_on(ObjectStore::with_report_requests(), addr).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("fake-kube-apiserver: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &kubeconfig {
        if let Err(err) = server.write_kubeconfig(path) {
            eprintln!(
                "fake-kube-apiserver: cannot write {}: {err}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        eprintln!("kubeconfig written to {}", path.display());
    }
    println!("{}", server.url());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("fake-kube-apiserver: cannot wait for Ctrl-C: {err}");
        return ExitCode::FAILURE;
    }
    server.stop().await;
    ExitCode::SUCCESS
}
