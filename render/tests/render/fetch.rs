//! `fetch_dataset` against fixtures served by a local axum server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use quire_crds::DatasetParameters;
use quire_render::{DataSources, FetchClient, Progress, RenderError, fetch_dataset};
use serde_json::json;

use futures::StreamExt;

/// Bytes the `/endless` fixture has produced so far.
#[derive(Clone, Default)]
struct Sent(Arc<AtomicU64>);

async fn serve() -> (SocketAddr, Sent) {
    let sent = Sent::default();
    let endless_sent = sent.clone();
    let app = Router::new()
        .route(
            "/games",
            // A literal body: serde_json's `json!` would sort the keys.
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"count": 3, "results": [
                        {"name": "Chess", "url": "https://example.com/chess", "meta": {"players": 2}},
                        {"name": "Go", "year": -2000, "url": "https://example.com/go"},
                        {"url": "https://example.com/zo\u00eb", "name": "Zo\u00eb's game", "tags": ["a", "b"]}
                    ]}"#,
                )
            }),
        )
        .route(
            "/many",
            get(|| async { axum::Json((0..50).map(|i| json!({"i": i})).collect::<Vec<_>>()) }),
        )
        .route(
            "/echo-key",
            get(|headers: HeaderMap| async move {
                let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                axum::Json(json!([{ "key": key }]))
            }),
        )
        .route(
            "/endless",
            get(move || {
                let sent = endless_sent.clone();
                async move {
                    let chunk = Bytes::from("{\"a\": 1},".repeat(1638));
                    let stream = futures::stream::repeat(chunk).map(move |c| {
                        sent.0.fetch_add(c.len() as u64, Ordering::Relaxed);
                        Ok::<_, Infallible>(c)
                    });
                    Body::from_stream(stream)
                }
            }),
        )
        .route("/declared-large", get(|| async { "x".repeat(300_000) }))
        .route("/status/{code}", get(|axum::extract::Path(code): axum::extract::Path<u16>| async move {
            (StatusCode::from_u16(code).unwrap(), "nope")
        }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "[]"
            }),
        )
        .route(
            "/trickle",
            get(|| async {
                let stream = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"[")) })
                    .chain(futures::stream::once(async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(Bytes::from_static(b"]"))
                    }));
                Body::from_stream(stream)
            }),
        )
        .route("/invalid", get(|| async { "[{\"a\": 1}, oops" }))
        .route("/object", get(|| async { axum::Json(json!({"not": "an array"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, sent)
}

fn sources(addr: SocketAddr) -> DataSources {
    DataSources::from_toml_str(&format!(
        r#"
        [sources.games]
        url = "http://{addr}/games"
        allow_private = true
        rows_pointer = "/results"
        title = "Games"

        [sources.games-named]
        url = "http://{addr}/games"
        allow_private = true
        rows_pointer = "/results"
        columns = ["url", "name"]

        [sources.many]
        url = "http://{addr}/many"
        allow_private = true
        max_rows = 20

        [sources.keyed]
        url = "http://{addr}/echo-key"
        allow_private = true
        headers = {{ "X-Api-Key" = "s3cret" }}

        [sources.endless]
        url = "http://{addr}/endless"
        allow_private = true
        max_bytes = 65536

        [sources.declared-large]
        url = "http://{addr}/declared-large"
        allow_private = true
        max_bytes = 1000

        [sources.broken]
        url = "http://{addr}/status/500"
        allow_private = true

        [sources.limited]
        url = "http://{addr}/status/429"
        allow_private = true

        [sources.missing]
        url = "http://{addr}/status/404"
        allow_private = true

        [sources.slow]
        url = "http://{addr}/slow"
        allow_private = true
        timeout_ms = 300

        [sources.trickle]
        url = "http://{addr}/trickle"
        allow_private = true
        timeout_ms = 300

        [sources.invalid]
        url = "http://{addr}/invalid"
        allow_private = true

        [sources.object]
        url = "http://{addr}/object"
        allow_private = true
        "#
    ))
    .unwrap()
}

/// The client the worker uses.
pub fn client() -> FetchClient {
    FetchClient::new("quire-render-tests").unwrap()
}

fn params(source: &str) -> DatasetParameters {
    DatasetParameters {
        source: source.into(),
        columns: None,
        limit: None,
    }
}

async fn fetch(
    addr: SocketAddr,
    params: &DatasetParameters,
) -> Result<quire_render::Dataset, RenderError> {
    fetch_dataset(&client(), &sources(addr), params, &Progress::new()).await
}

#[tokio::test]
async fn rows_are_read_at_the_pointer_with_columns_in_first_seen_order() {
    let (addr, _) = serve().await;
    let progress = Progress::new();

    let data = fetch_dataset(&client(), &sources(addr), &params("games"), &progress)
        .await
        .unwrap();

    assert_eq!(progress.get(), 50);
    assert_eq!(data.source, "games");
    assert_eq!(data.title.as_deref(), Some("Games"));
    assert_eq!(data.columns, ["name", "url", "meta", "year", "tags"]);
    assert_eq!(data.rows.len(), 3);
    assert_eq!(
        data.rows[0],
        vec![
            json!("Chess"),
            json!("https://example.com/chess"),
            json!({"players": 2}),
            json!(null),
            json!(null)
        ]
    );
    assert_eq!(data.rows[1][3], json!(-2000));
    assert_eq!(data.rows[2][0], json!("Zoë's game"));
    assert!(!data.truncated);
}

#[tokio::test]
async fn requested_columns_override_the_sources_columns() {
    let (addr, _) = serve().await;

    let configured = fetch(addr, &params("games-named")).await.unwrap();
    assert_eq!(configured.columns, ["url", "name"]);
    assert_eq!(
        configured.rows[1],
        vec![json!("https://example.com/go"), json!("Go")]
    );

    let mut requested = params("games-named");
    requested.columns = Some(vec!["year".into(), "name".into()]);
    let data = fetch(addr, &requested).await.unwrap();
    assert_eq!(data.columns, ["year", "name"]);
    assert_eq!(data.rows[0], vec![json!(null), json!("Chess")]);
    assert_eq!(data.rows[1], vec![json!(-2000), json!("Go")]);
}

#[tokio::test]
async fn the_row_cap_truncates_and_a_limit_can_only_lower_it() {
    let (addr, _) = serve().await;

    let data = fetch(addr, &params("many")).await.unwrap();
    assert_eq!(data.rows.len(), 20);
    assert!(data.truncated);
    assert_eq!(data.rows[19], vec![json!(19)]);

    let mut lower = params("many");
    lower.limit = Some(5);
    let data = fetch(addr, &lower).await.unwrap();
    assert_eq!(data.rows.len(), 5);
    assert!(data.truncated);

    let mut higher = params("many");
    higher.limit = Some(1000);
    assert_eq!(fetch(addr, &higher).await.unwrap().rows.len(), 20);
}

#[tokio::test]
async fn configured_headers_are_sent() {
    let (addr, _) = serve().await;
    let data = fetch(addr, &params("keyed")).await.unwrap();
    assert_eq!(data.rows, vec![vec![json!("s3cret")]]);
}

#[tokio::test]
async fn an_endless_body_is_abandoned_once_it_passes_the_size_cap() {
    let (addr, sent) = serve().await;
    let started = Instant::now();

    let err = fetch(addr, &params("endless")).await.unwrap_err();

    assert!(
        matches!(err, RenderError::TooLarge { limit: 65536 }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Give the server a moment to notice the closed connection, then check it stopped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_close = sent.0.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sent.0.load(Ordering::Relaxed),
        after_close,
        "the server is still streaming"
    );
    assert!(
        after_close < 64 * 1024 * 1024,
        "read far more than the cap: {after_close} bytes"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_fails_before_reading() {
    let (addr, _) = serve().await;
    let err = fetch(addr, &params("declared-large")).await.unwrap_err();
    assert!(
        matches!(err, RenderError::TooLarge { limit: 1000 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable_but_not_found_is_not() {
    let (addr, _) = serve().await;

    let err = fetch(addr, &params("broken")).await.unwrap_err();
    assert!(matches!(err, RenderError::UpstreamStatus(500)), "{err:?}");
    assert!(err.is_retryable());

    let err = fetch(addr, &params("limited")).await.unwrap_err();
    assert!(matches!(err, RenderError::UpstreamStatus(429)), "{err:?}");
    assert!(err.is_retryable());

    let err = fetch(addr, &params("missing")).await.unwrap_err();
    assert!(matches!(err, RenderError::UpstreamStatus(404)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn slow_upstreams_time_out_and_can_be_retried() {
    let (addr, _) = serve().await;
    for source in ["slow", "trickle"] {
        let started = Instant::now();
        let err = fetch(addr, &params(source)).await.unwrap_err();
        assert!(matches!(err, RenderError::Fetch(_)), "{source}: {err:?}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&format!("`{source}`")), "{err}");
        assert!(
            !err.to_string().contains("127.0.0.1"),
            "the URL leaked: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{source} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn unreachable_upstreams_are_retryable_fetch_errors_without_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sources = DataSources::from_toml_str(&format!(
        "[sources.down]\nurl = \"http://127.0.0.1:{port}/x\"\nallow_private = true"
    ))
    .unwrap();

    let err = fetch_dataset(&client(), &sources, &params("down"), &Progress::new())
        .await
        .unwrap_err();

    assert!(matches!(err, RenderError::Fetch(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        !err.to_string().contains(&port.to_string()),
        "the URL leaked: {err}"
    );
}

#[tokio::test]
async fn invalid_json_and_wrong_shapes_are_bad_data() {
    let (addr, _) = serve().await;
    for source in ["invalid", "object"] {
        let err = fetch(addr, &params(source)).await.unwrap_err();
        assert!(matches!(err, RenderError::BadData(_)), "{source}: {err:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn an_unknown_source_names_no_other_source() {
    let (addr, _) = serve().await;
    let err = fetch(addr, &params("gmaes")).await.unwrap_err();
    assert!(matches!(err, RenderError::UnknownSource { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert_eq!(message, "unknown data source `gmaes`");
    // Users must not learn which sources exist from a typo.
    assert!(!message.contains("games"), "{message}");

    let err = fetch_dataset(
        &client(),
        &DataSources::empty(),
        &params("games"),
        &Progress::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "unknown data source `games`");
}
