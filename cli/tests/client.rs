//! The `quire` client end to end: the real binary as a subprocess against a real `quire dev`
//! started in this process (SQLite, local files, its worker), with its own config
//! directory per test.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use quire::dev::{Dev, DevArgs, start};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PASSWORD: &str = "correct horse battery";

/// A `quire dev` and a place for the client: a config directory and a working directory.
struct Setup {
    dev: Dev,
    server: String,
    _data: tempfile::TempDir,
    config: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        Self::with_sources(None).await
    }

    /// `quire dev` reading data sources from `sources` (TOML).
    async fn with_sources(sources: Option<String>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let data_sources = sources.map(|toml| {
            let path = data.path().join("test-sources.toml");
            std::fs::write(&path, toml).unwrap();
            path
        });
        let dev = start(&DevArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            data_sources,
            concurrency: 2,
            shutdown_grace: 2,
            retention: Default::default(),
            quota_unfinished: 20,
            quota_per_hour: 500,
            max_wait: Duration::from_secs(60),
            webhooks: Default::default(),
        })
        .await
        .unwrap();
        Self {
            server: format!("http://{}", dev.addr),
            dev,
            _data: data,
            config: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"));
        command
            .args(args)
            .env("QUIRE_SERVER", &self.server)
            .env("QUIRE_CONFIG_DIR", self.config_dir())
            .env_remove("QUIRE_DATA_SOURCES_FILE")
            .current_dir(self.cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `quire ARGS` to the end.
    async fn quire(&self, args: &[&str]) -> Run {
        self.quire_with_stdin(args, None).await
    }

    async fn quire_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = self.command(args);
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("quire finished within 2 minutes")
            .unwrap();
        Run::new(args, output)
    }

    /// Signs up (and so in) as `email`, checking it worked.
    async fn sign_up(&self, email: &str) {
        let run = self
            .quire_with_stdin(
                &["signup", "--email", email, "--password-stdin"],
                Some(&format!("{PASSWORD}\n")),
            )
            .await;
        run.succeeded();
        assert!(run.stdout.contains(email), "{run:?}");
    }

    /// Not created in advance: the client creates it (0700).
    fn config_dir(&self) -> PathBuf {
        self.config.path().join("quire")
    }

    fn credentials_path(&self) -> PathBuf {
        self.config_dir().join("credentials.json")
    }

    fn credentials(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.credentials_path()).unwrap()).unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.cwd.path().join(name)
    }

    /// The reports `reports list --output json` shows.
    async fn listed(&self) -> Vec<Value> {
        let run = self.quire(&["reports", "list", "--output", "json"]).await;
        run.succeeded();
        run.json()["items"].as_array().unwrap().clone()
    }
}

/// One finished `quire` run.
struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`quire {}` exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn new(args: &[&str], output: Output) -> Self {
        Self {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn succeeded(&self) {
        assert_eq!(self.code, Some(0), "{self:?}");
    }

    fn exited(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{self:?}");
        if code != 2 {
            assert!(self.stderr.contains("error: "), "{self:?}");
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_create_with_wait_list_download_and_logout() {
    let setup = Setup::new().await;
    setup.sign_up("ada@example.com").await;
    assert_eq!(mode(&setup.credentials_path()), 0o600);
    assert_eq!(mode(&setup.config_dir()), 0o700);
    let credentials = setup.credentials();
    assert_eq!(credentials["server"], setup.server.as_str());
    assert!(credentials["refresh_token"].is_string());

    // `login` works on its own too, and replaces the session.
    let login = setup
        .quire_with_stdin(
            &["login", "--email", "ada@example.com", "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
    login.succeeded();
    assert_ne!(
        setup.credentials()["refresh_token"],
        credentials["refresh_token"]
    );

    // Wait, download: a real PDF. `--output json` after the subcommand prints the report.
    let create = setup
        .quire(&[
            "reports", "create", "profile", "--format", "pdf", "--wait", "-o", "out.pdf",
            "--output", "json",
        ])
        .await;
    create.succeeded();
    let report = create.json();
    assert_eq!(report["status"], "completed");
    assert_eq!(report["progress"], 100);
    let id = report["id"].as_str().unwrap().to_owned();
    let pdf = std::fs::read(setup.file("out.pdf")).unwrap();
    assert!(
        pdf.starts_with(b"%PDF"),
        "a PDF: {:?}",
        &pdf[..16.min(pdf.len())]
    );

    // Listed, as JSON a script can parse.
    let listed = setup.listed().await;
    assert!(listed.iter().any(|r| r["id"] == id.as_str()), "{listed:?}");
    // And as a table for people.
    let table = setup.quire(&["reports", "list"]).await;
    table.succeeded();
    assert!(table.stdout.starts_with("ID"), "{table:?}");
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("completed"),
        "{table:?}"
    );

    // `get` shows it; `download` with the default name writes `<id>.pdf` here.
    let get = setup.quire(&["reports", "get", &id]).await;
    get.succeeded();
    assert!(get.stdout.contains("100%"), "{get:?}");
    setup.quire(&["reports", "download", &id]).await.succeeded();
    let again = std::fs::read(setup.file(&format!("{id}.pdf"))).unwrap();
    assert_eq!(again, pdf);
    // `-o -` writes the file itself to standard output.
    let stdout = setup.quire(&["reports", "download", &id, "-o", "-"]).await;
    stdout.succeeded();
    assert!(stdout.stdout.starts_with("%PDF"));

    // A report that does not exist (or is someone else's): 4.
    let missing = uuid::Uuid::new_v4().to_string();
    let run = setup.quire(&["reports", "get", &missing]).await;
    run.exited(4);
    assert!(run.stderr.contains("report not found"), "{run:?}");

    // Signed out: the file is gone, the server refuses, and the client says 3.
    let logout = setup.quire(&["logout"]).await;
    logout.succeeded();
    assert!(!setup.credentials_path().exists());
    let run = setup.quire(&["reports", "list"]).await;
    run.exited(3);
    assert!(run.stderr.contains("quire login"), "{run:?}");
    setup.dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_refused_access_token_is_refreshed_and_saved() {
    let setup = Setup::new().await;
    setup.sign_up("refresh@example.com").await;
    let before = setup.credentials();

    // Expired by the clock: refreshed before the request.
    let mut expired = before.clone();
    expired["expires_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(setup.credentials_path(), expired.to_string()).unwrap();
    setup.quire(&["reports", "list"]).await.succeeded();
    let after = setup.credentials();
    // (The access token may be byte for byte the same when issued within the same second.)
    assert_ne!(after["refresh_token"], before["refresh_token"]);
    let expires_at: chrono::DateTime<chrono::Utc> =
        after["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires_at > chrono::Utc::now());
    assert_eq!(mode(&setup.credentials_path()), 0o600);

    // Refused by the server although not expired by the clock: refreshed once on the 401.
    let mut refused = after.clone();
    refused["access_token"] = "not-a-token".into();
    std::fs::write(setup.credentials_path(), refused.to_string()).unwrap();
    setup.quire(&["reports", "list"]).await.succeeded();
    let renewed = setup.credentials();
    assert_ne!(renewed["access_token"], "not-a-token");
    assert_ne!(renewed["refresh_token"], after["refresh_token"]);

    // A refresh token the server no longer accepts (spent above): not signed in, 3.
    let mut spent = renewed.clone();
    spent["refresh_token"] = before["refresh_token"].clone();
    spent["expires_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(setup.credentials_path(), spent.to_string()).unwrap();
    let run = setup.quire(&["reports", "list"]).await;
    run.exited(3);
    assert!(run.stderr.contains("quire login"), "{run:?}");
    setup.dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_global_flags_go_anywhere() {
    let setup = Setup::new().await;
    setup
        .quire(&["reports", "list", "--no-such-flag"])
        .await
        .exited(2);
    setup.quire(&["reports", "frobnicate"]).await.exited(2);
    setup.quire(&["--output", "yaml", "types"]).await.exited(2);
    // `-o` only makes sense with `--wait`.
    setup
        .quire(&[
            "reports", "create", "profile", "--format", "pdf", "-o", "x.pdf",
        ])
        .await
        .exited(2);
    setup.sign_up("usage@example.com").await;
    let run = setup
        .quire(&[
            "reports", "create", "activity", "--format", "csv", "--param", "days=1", "--param",
            "days=2",
        ])
        .await;
    run.exited(2);
    assert!(run.stderr.contains("more than once"), "{run:?}");

    // Before the subcommand, or after it: the same.
    let before = setup.quire(&["--output", "json", "reports", "list"]).await;
    before.succeeded();
    let after = setup.quire(&["reports", "list", "--output", "json"]).await;
    after.succeeded();
    assert_eq!(before.json()["items"], after.json()["items"]);
    // `--server` on the line beats QUIRE_SERVER, and an unreachable server is named.
    let run = setup
        .quire(&["reports", "list", "--server", "http://127.0.0.1:9"])
        .await;
    run.exited(3); // the stored session is for another server
    let run = setup
        .quire(&[
            "signup",
            "--email",
            "x@example.com",
            "--password-stdin",
            "--server",
            "http://127.0.0.1:9",
        ])
        .await;
    run.exited(2); // standard input is empty
    let run = setup
        .quire_with_stdin(
            &[
                "login",
                "--email",
                "x@example.com",
                "--password-stdin",
                "--server",
                "http://127.0.0.1:9",
            ],
            Some(PASSWORD),
        )
        .await;
    run.exited(1);
    assert!(run.stderr.contains("http://127.0.0.1:9"), "{run:?}");

    // A client mistake the server refuses (422): 1, with the server's message.
    let run = setup
        .quire(&["reports", "create", "profile", "--format", "csv"])
        .await;
    run.exited(1);
    assert!(run.stderr.contains("csv"), "{run:?}");
    setup.dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_signed_in_at_all_exits_3() {
    let setup = Setup::new().await;
    let run = setup.quire(&["reports", "list"]).await;
    run.exited(3);
    assert_eq!(run.stderr.trim(), "error: not signed in; run `quire login`");
    let run = setup
        .quire_with_stdin(
            &["login", "--email", "nobody@example.com", "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
    run.exited(3);
    assert!(run.stderr.contains("invalid email or password"), "{run:?}");
    assert!(!setup.credentials_path().exists());
    setup.dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_printed_for_each_shell() {
    let setup = Setup::new().await;
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef quire"),
        ("fish", "complete -c quire"),
    ] {
        let run = setup.quire(&["completions", shell]).await;
        run.succeeded();
        assert!(run.stdout.contains(marker), "{shell}: {run:?}");
        assert!(run.stdout.contains("reports"), "{shell}: {run:?}");
    }
    setup.dev.stop().await;
}

/// A local data source server: `/broken` answers 404 (a permanent failure: a 5xx would be
/// retried five times with backoff, ~30 s), `/slow` never answers. Returns its address.
async fn data_source_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                if request.starts_with("GET /slow") {
                    tokio::time::sleep(Duration::from_secs(300)).await;
                } else {
                    let body = r#"{"error":"no such table"}"#;
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    addr
}

fn sources_toml(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[sources.broken]
url = "http://{addr}/broken"
allow_private = true

[sources.slow]
url = "http://{addr}/slow"
timeout_secs = 120
allow_private = true
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_fails_exits_5_with_its_error_and_leaves_no_file() {
    let addr = data_source_server().await;
    let setup = Setup::with_sources(Some(sources_toml(addr))).await;
    setup.sign_up("fails@example.com").await;
    let run = setup
        .quire(&[
            "reports",
            "create",
            "dataset",
            "--format",
            "csv",
            "--param",
            "source=broken",
            "--param",
            r#"columns=["a","b"]"#,
            "--wait",
            "-o",
            "out.csv",
        ])
        .await;
    run.exited(5);
    assert!(run.stderr.contains("failed"), "{run:?}");
    assert!(
        run.stderr.contains("404"),
        "the report's error_message: {run:?}"
    );
    assert!(
        entries(setup.cwd.path()).is_empty(),
        "{:?}",
        entries(setup.cwd.path())
    );
    // The columns went to the server as a JSON array.
    let listed = setup.listed().await;
    assert_eq!(
        listed[0]["parameters"]["columns"],
        serde_json::json!(["a", "b"])
    );
    setup.dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_download_exits_1_and_a_cancel_ends_the_wait_with_5() {
    let addr = data_source_server().await;
    let setup = Setup::with_sources(Some(sources_toml(addr))).await;
    setup.sign_up("cancel@example.com").await;
    let waiting = setup
        .command(&[
            "reports",
            "create",
            "dataset",
            "--format",
            "csv",
            "--param",
            "source=slow",
            "--wait",
        ])
        .spawn()
        .unwrap();

    // The waiting command's report, as soon as it exists.
    let mut id = None;
    for _ in 0..100 {
        if let Some(report) = setup.listed().await.first() {
            id = report["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("the report was created");

    let run = setup
        .quire(&["reports", "download", &id, "-o", "early.csv"])
        .await;
    run.exited(1);
    assert!(
        run.stderr.contains("once completed"),
        "the server's 409: {run:?}"
    );
    assert!(
        entries(setup.cwd.path()).is_empty(),
        "{:?}",
        entries(setup.cwd.path())
    );

    let cancel = setup.quire(&["reports", "cancel", &id]).await;
    cancel.succeeded();
    let output = tokio::time::timeout(Duration::from_secs(30), waiting.wait_with_output())
        .await
        .expect("the waiting command noticed the cancel")
        .unwrap();
    let run = Run::new(&["reports", "create", "…", "--wait"], output);
    run.exited(5);
    assert!(run.stderr.contains("cancelled"), "{run:?}");
    assert!(
        entries(setup.cwd.path()).is_empty(),
        "{:?}",
        entries(setup.cwd.path())
    );
    // Cancelling again: the server's 409, exit 1.
    setup.quire(&["reports", "cancel", &id]).await.exited(1);
    setup.dev.stop().await;
}

/// Needs `GET /report-types` and `GET /data-sources` (issue 11, the lead's part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_and_sources_show_the_catalogue() {
    let addr = data_source_server().await;
    let setup = Setup::with_sources(Some(sources_toml(addr))).await;
    setup.sign_up("catalogue@example.com").await;
    let run = setup.quire(&["types", "--output", "json"]).await;
    run.succeeded();
    let types = run.json();
    let names: Vec<&str> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"profile") && names.contains(&"dataset"),
        "{names:?}"
    );
    let run = setup.quire(&["types"]).await;
    run.succeeded();
    assert!(
        run.stdout.contains("dataset") && run.stdout.contains("csv"),
        "{run:?}"
    );

    let run = setup.quire(&["sources"]).await;
    run.succeeded();
    assert!(
        run.stdout.contains("broken") && run.stdout.contains("slow"),
        "{run:?}"
    );
    let run = setup.quire(&["sources", "--output", "json"]).await;
    run.succeeded();
    assert_eq!(run.json()["items"].as_array().unwrap().len(), 2);
    setup.dev.stop().await;
}

/// Needs the `/webhooks` routes (issue 11, built in parallel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_created_listed_shown_and_deleted() {
    let setup = Setup::new().await;
    setup.sign_up("hooks@example.com").await;
    let run = setup
        .quire(&[
            "webhooks",
            "create",
            "https://hooks.example.com/quire",
            "--event",
            "report.completed",
            "--event",
            "report.failed",
        ])
        .await;
    run.succeeded();
    assert!(run.stdout.contains("secret"), "{run:?}");
    assert!(run.stderr.contains("will not be shown again"), "{run:?}");

    let run = setup.quire(&["webhooks", "list", "--output", "json"]).await;
    run.succeeded();
    let items = run.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        items[0].get("secret").is_none(),
        "the secret is shown once only"
    );
    let id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        items[0]["events"],
        serde_json::json!(["report.completed", "report.failed"])
    );

    let run = setup.quire(&["webhooks", "get", &id]).await;
    run.succeeded();
    assert!(
        run.stdout.contains("https://hooks.example.com/quire"),
        "{run:?}"
    );
    setup
        .quire(&["webhooks", "deliveries", &id])
        .await
        .succeeded();
    setup.quire(&["webhooks", "delete", &id]).await.succeeded();
    setup.quire(&["webhooks", "get", &id]).await.exited(4);
    setup.dev.stop().await;
}
