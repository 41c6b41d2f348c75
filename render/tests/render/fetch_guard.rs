//! What a fetch refuses: private addresses (unless a source allows them) and redirects that
//! leave the source's origin. Upstreams are local axum servers that record every request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use quire_crds::DatasetParameters;
use quire_render::{DataSources, Dataset, Progress, RedirectRefusal, RenderError, fetch_dataset};
use serde_json::json;

use crate::fetch::client;

/// One request an upstream received: its path and the `X-Api-Key` it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    path: String,
    key: Option<String>,
}

fn seen(path: &str, key: Option<&str>) -> Seen {
    Seen {
        path: path.to_owned(),
        key: key.map(str::to_owned),
    }
}

#[derive(Clone)]
struct UpstreamState {
    requests: Arc<Mutex<Vec<Seen>>>,
    /// Where `/away` redirects to.
    away: String,
}

/// A local upstream on 127.0.0.1: `/rows` answers rows, `/hop` redirects to `/rows`,
/// `/loop` to itself and `/away` to whatever `away` makes of the upstream's address.
struct Upstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start(away: impl FnOnce(SocketAddr) -> String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = UpstreamState {
            requests: requests.clone(),
            away: away(addr),
        };
        let app = Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, requests }
    }

    /// An upstream whose `/away` redirects nowhere in particular.
    async fn plain() -> Self {
        Self::start(|_| "/rows".to_owned()).await
    }

    fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn answer(State(state): State<UpstreamState>, uri: Uri, headers: HeaderMap) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.requests.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        key,
    });
    let redirect = |to: &str| (StatusCode::FOUND, [("location", to.to_owned())]).into_response();
    match uri.path() {
        "/rows" => axum::Json(json!([{ "name": "Chess" }])).into_response(),
        "/hop" => redirect("/rows"),
        "/loop" => redirect("/loop"),
        "/away" => redirect(&state.away),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn fetch(sources: &str, source: &str) -> Result<Dataset, RenderError> {
    let sources = DataSources::from_toml_str(sources).unwrap();
    let params = DatasetParameters {
        source: source.into(),
        columns: None,
        limit: None,
    };
    fetch_dataset(&client(), &sources, &params, &Progress::new()).await
}

const PRIVATE: &str =
    "resolves to a private address; set allow_private = true in its definition if it is internal";

/// Asserts `err` is the private-address refusal of `source`, saying nothing of the URL.
fn assert_private(err: &RenderError, source: &str, port: u16) {
    assert!(
        matches!(err, RenderError::PrivateAddress { name } if name == source),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("data source `{source}` {PRIVATE}"));
    assert!(!err.to_string().contains(&port.to_string()), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_source_on_a_loopback_address_is_refused_unless_it_allows_private_addresses() {
    let upstream = Upstream::plain().await;
    let sources = format!(
        r#"
        [sources.local]
        url = "http://{0}/rows"

        [sources.internal]
        url = "http://{0}/rows"
        allow_private = true
        "#,
        upstream.addr
    );

    let err = fetch(&sources, "local").await.unwrap_err();
    assert_private(&err, "local", upstream.port());
    assert_eq!(
        upstream.requests(),
        [],
        "the refused fetch reached the server"
    );

    let data = fetch(&sources, "internal").await.unwrap();
    assert_eq!(data.rows, [[json!("Chess")]]);
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused_unless_allowed() {
    let upstream = Upstream::plain().await;
    let sources = format!(
        r#"
        [sources.local]
        url = "http://localhost:{0}/rows"

        [sources.internal]
        url = "http://localhost:{0}/rows"
        allow_private = true
        "#,
        upstream.port()
    );

    let err = fetch(&sources, "local").await.unwrap_err();
    assert_private(&err, "local", upstream.port());
    assert!(!err.to_string().contains("localhost"), "{err}");
    assert_eq!(upstream.requests(), []);

    let data = fetch(&sources, "internal").await.unwrap();
    assert_eq!(data.rows, [[json!("Chess")]]);
}

#[tokio::test]
async fn metadata_and_other_private_ip_literals_are_refused_before_connecting() {
    let upstream = Upstream::plain().await;
    let port = upstream.port();
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://10.0.0.1/rows".to_owned(),
        "http://100.100.100.200/latest/meta-data/".to_owned(),
        format!("http://0.0.0.0:{port}/rows"),
        format!("http://[::1]:{port}/rows"),
        format!("http://[::ffff:127.0.0.1]:{port}/rows"),
    ] {
        // A connection attempt would end in a timeout, not in the refusal.
        let sources = format!("[sources.meta]\nurl = \"{url}\"\ntimeout_ms = 3000");
        let started = Instant::now();
        let err = fetch(&sources, "meta").await.unwrap_err();
        assert_private(&err, "meta", port);
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
    assert_eq!(upstream.requests(), []);
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_other_origin_hears_nothing() {
    let elsewhere = Upstream::plain().await;
    let target = format!("http://{}/rows", elsewhere.addr);
    let upstream = Upstream::start(move |_| target).await;
    let sources = format!(
        r#"
        [sources.keyed]
        url = "http://{}/away"
        allow_private = true
        headers = {{ "X-Api-Key" = "s3cret" }}
        "#,
        upstream.addr
    );

    let err = fetch(&sources, "keyed").await.unwrap_err();

    assert!(
        matches!(
            err,
            RenderError::Redirect {
                refusal: RedirectRefusal::CrossOrigin,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "data source `keyed` redirected to another origin; only same-origin redirects are followed"
    );
    assert!(!err.is_retryable());
    assert_eq!(upstream.requests(), [seen("/away", Some("s3cret"))]);
    assert_eq!(
        elsewhere.requests(),
        [],
        "the other origin got a request (and the API key)"
    );
}

#[tokio::test]
async fn another_host_name_for_the_same_server_is_another_origin() {
    let upstream = Upstream::start(|addr| format!("http://localhost:{}/rows", addr.port())).await;
    let sources = format!(
        "[sources.keyed]\nurl = \"http://{}/away\"\nallow_private = true\nheaders = {{ \"X-Api-Key\" = \"s3cret\" }}",
        upstream.addr
    );

    let err = fetch(&sources, "keyed").await.unwrap_err();

    assert!(
        matches!(
            err,
            RenderError::Redirect {
                refusal: RedirectRefusal::CrossOrigin,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(upstream.requests(), [seen("/away", Some("s3cret"))]);
}

#[tokio::test]
async fn a_same_origin_redirect_is_followed_with_the_configured_headers() {
    let upstream = Upstream::plain().await;
    let sources = format!(
        "[sources.keyed]\nurl = \"http://{}/hop\"\nallow_private = true\nheaders = {{ \"X-Api-Key\" = \"s3cret\" }}",
        upstream.addr
    );

    let data = fetch(&sources, "keyed").await.unwrap();

    assert_eq!(data.rows, [[json!("Chess")]]);
    assert_eq!(
        upstream.requests(),
        [seen("/hop", Some("s3cret")), seen("/rows", Some("s3cret"))]
    );
}

#[tokio::test]
async fn a_redirect_loop_stops_after_three_redirects_and_may_be_retried() {
    let upstream = Upstream::plain().await;
    let sources = format!(
        "[sources.looping]\nurl = \"http://{}/loop\"\nallow_private = true",
        upstream.addr
    );

    let err = fetch(&sources, "looping").await.unwrap_err();

    assert!(
        matches!(
            err,
            RenderError::Redirect {
                refusal: RedirectRefusal::TooMany { max: 3 },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "data source `looping` redirected more than 3 times"
    );
    assert!(err.is_retryable());
    assert_eq!(
        upstream.requests().len(),
        4,
        "the request and three redirects"
    );
}
