//! Running the installed `kubectl` (or `$KUBECTL`) against a [`FakeApiServer`], with its own
//! kubeconfig, discovery cache and `HOME`, so tests never touch the user's configuration.

use std::path::PathBuf;

use super::FakeApiServer;

/// `kubectl` pointed at one fake server.
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    pub fn for_server(server: &FakeApiServer) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .expect("write a kubeconfig");
        let cache = dir.path().join("cache");
        Self {
            kubeconfig,
            cache,
            dir,
        }
    }

    /// The kubeconfig file kubectl uses (also usable by other clients of the server).
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Runs `kubectl ARGS`: (succeeded, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let binary = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
        let output = tokio::process::Command::new(&binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "run {binary} (install kubectl, e.g. `apt-get install kubectl`, or set KUBECTL): {e}"
                )
            });
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
