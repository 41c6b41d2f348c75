//! `Prefer: wait=N` (RFC 7240): hold a report request until the report is finished.
//!
//! A client that would otherwise poll asks the server to hold its request up to `N`
//! seconds (at most [`ApiConfig::max_wait`](crate::state::ApiConfig::max_wait)). The
//! request waits on the store's change notification for that one report
//! ([`quire_core::store::changes`]), never on a polling loop, and holds no database
//! connection meanwhile: it re-reads the report only when woken. The answer says what was
//! applied with `Preference-Applied: wait=N`.
//!
//! Preferences the server does not understand, and a `wait` that is not a number, are
//! ignored, as the RFC asks: a `Prefer` header never makes a request fail.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quire_core::model::Report;
use tokio::time::Instant;
use uuid::Uuid;

use super::error::ApiError;
use crate::state::AppState;

pub static PREFER: HeaderName = HeaderName::from_static("prefer");
pub static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// How long the request asks to be held, capped at `max`; `None` without a `wait`
/// preference (or with a cap of zero, which turns waiting off).
pub fn requested_wait(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    if max.is_zero() {
        return None;
    }
    let seconds = headers
        .get_all(&PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            // `wait=10; some-parameter` — parameters after `;` do not concern `wait`.
            let token = preference.split(';').next()?.trim();
            let (name, value) = token.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })?;
    Some(Duration::from_secs(seconds).min(max))
}

/// The `Preference-Applied` value for a wait of `applied`.
pub fn applied(applied: Duration) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&format!("wait={}", applied.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("wait=0"));
    (PREFERENCE_APPLIED.clone(), value)
}

/// `user`'s report `id` once it is finished, or as it is when `wait` has passed: woken
/// by each change of that report, re-read then, no connection held in between.
pub async fn until_finished(
    state: &AppState,
    user_id: Uuid,
    id: Uuid,
    wait: Duration,
) -> Result<Report, ApiError> {
    let deadline = Instant::now() + wait;
    // Watch before reading: a change between the read and the wait still wakes us.
    let watch = state.report_changes().watch(id);
    loop {
        let changed = watch.changed();
        let report = state
            .store()
            .user_report(user_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("report"))?;
        if report.status.is_terminal() || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::select! {
            _ = changed => {}
            // Read once more at the deadline: the answer shows the state at that moment.
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The request timeout, lengthened by the wait a request asks for (up to the maximum): a
/// held request is answered by its own deadline, not cut off by the general one. A request
/// still unanswered is answered 503 (given its JSON body further out).
pub async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = state.config();
    let wait = requested_wait(request.headers(), config.max_wait).unwrap_or_default();
    match tokio::time::timeout(config.request_timeout + wait, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&PREFER, HeaderValue::from_static(value));
        }
        headers
    }

    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn wait_is_read_from_any_preference_list() {
        assert_eq!(
            requested_wait(&prefer(&["wait=5"]), MAX),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            requested_wait(&prefer(&["respond-async, Wait = 7 ; x=y"]), MAX),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            requested_wait(&prefer(&["return=minimal", "wait=\"3\""]), MAX),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn wait_is_capped_and_nonsense_is_ignored() {
        assert_eq!(requested_wait(&prefer(&["wait=3600"]), MAX), Some(MAX));
        assert_eq!(requested_wait(&prefer(&["wait=-1"]), MAX), None);
        assert_eq!(requested_wait(&prefer(&["wait=soon"]), MAX), None);
        assert_eq!(requested_wait(&prefer(&["waiting=5"]), MAX), None);
        assert_eq!(requested_wait(&HeaderMap::new(), MAX), None);
        assert_eq!(requested_wait(&prefer(&["wait=5"]), Duration::ZERO), None);
    }

    #[test]
    fn the_applied_wait_is_whole_seconds() {
        let (name, value) = applied(Duration::from_secs(12));
        assert_eq!(name, "preference-applied");
        assert_eq!(value, "wait=12");
    }
}
