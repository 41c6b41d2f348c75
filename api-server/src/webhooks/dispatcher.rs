//! The dispatcher: sends the deliveries the database recorded, retries them on Standard
//! Webhooks' widening schedule and disables endpoints that keep failing.
//!
//! Every API process runs one ([`crate::upkeep::spawn`]). It claims due deliveries under a
//! lease (the store pushes `next_attempt_at` forward; on Postgres `FOR UPDATE SKIP LOCKED`
//! keeps replicas apart), so a process that dies mid-send leaves them to come due again:
//! a receiver may see a delivery twice, and deduplicates on `webhook-id`, which every
//! attempt of one delivery shares.
//!
//! An endpoint is disabled, with the reason shown in its view, when it answers 410 Gone,
//! or when one of its deliveries is given up (retried for `QUIRE_WEBHOOK_RETRY_FOR`) and
//! nothing was delivered to it since that delivery's event: it failed throughout.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quire_core::store::DeliveryTarget;
use quire_core::webhook::{AttemptOutcome, Delivery, WebhookEvent};
use quire_render::net::{AddressPolicy, CheckedResolver, RefusedAddress};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{WebhookSettings, literal_ip, retry_delay, signature};
use crate::http::reports::{ReportView, view};
use crate::state::AppState;

/// How long a claimed delivery is held before another dispatcher may take it: well past
/// one request's timeout, so only a dead dispatcher's deliveries are taken over.
const LEASE: Duration = Duration::from_secs(60);

/// The body every delivery carries (Standard Webhooks' `{type, timestamp, data}`).
#[derive(Debug, Serialize)]
pub struct Payload {
    /// The event, e.g. `report.completed`.
    pub r#type: WebhookEvent,
    /// When it happened (the report's transition), the same on every attempt.
    pub timestamp: DateTime<Utc>,
    /// The report, as `GET /reports/{id}` shows it now (with a fresh download link).
    pub data: ReportView,
}

/// Sends due deliveries. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    state: AppState,
    settings: WebhookSettings,
    policy: AddressPolicy,
    /// Resolves through a [`CheckedResolver`] of `policy`; follows no redirects, uses no
    /// proxy (names would be resolved out of the check's sight).
    client: reqwest::Client,
}

/// What one attempt came to, before it is recorded.
struct Sent {
    response_status: Option<u16>,
    /// `None` when the receiver accepted it.
    error: Option<String>,
}

impl Dispatcher {
    /// A dispatcher with the settings of `state`'s configuration. Fails only when the TLS
    /// backend cannot be initialised.
    pub fn new(state: AppState) -> Result<Self, reqwest::Error> {
        let settings = state.config().webhooks.clone();
        let policy = settings.address_policy();
        let client = reqwest::Client::builder()
            .user_agent(concat!("quire-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(CheckedResolver::new(policy))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                state,
                settings,
                policy,
                client,
            }),
        })
    }

    /// Sends deliveries as they come due until `shutdown`, then lets the ones in flight
    /// finish (each is bounded by the request timeout).
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let mut sending = JoinSet::new();
        loop {
            while sending.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(deliveries) => {
                        claimed_all = deliveries.len() == free;
                        for delivery in deliveries {
                            let Ok(slot) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let this = self.clone();
                            sending.spawn(async move {
                                this.deliver(delivery).await;
                                drop(slot);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
                }
            }
            if claimed_all && !shutdown.is_cancelled() {
                // There may be more due right now.
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(settings.poll_every) => {}
                Some(_) = sending.join_next(), if free == 0 => {}
            }
        }
        while sending.join_next().await.is_some() {}
    }

    /// Sends every delivery due now, once, and returns how many it handled (tests and
    /// one-off passes; [`Dispatcher::run`] is the loop).
    pub async fn deliver_due(&self) -> quire_core::Result<usize> {
        let deliveries = self.claim(self.inner.settings.concurrency.max(1)).await?;
        let count = deliveries.len();
        futures::future::join_all(deliveries.into_iter().map(|d| self.deliver(d))).await;
        Ok(count)
    }

    async fn claim(&self, limit: usize) -> quire_core::Result<Vec<Delivery>> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::MAX);
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.inner
            .state
            .store()
            .claim_deliveries(now, now + lease, limit)
            .await
    }

    /// One attempt of one claimed delivery, recorded. Failures to record are logged: the
    /// lease brings the delivery back.
    #[tracing::instrument(skip_all, fields(
        delivery_id = %delivery.id,
        webhook_id = %delivery.webhook_id,
        report_id = %delivery.report_id,
        attempt = delivery.attempts + 1,
    ))]
    async fn deliver(&self, delivery: Delivery) {
        if let Err(e) = self.try_deliver(&delivery).await {
            tracing::warn!(error = %e, "webhook delivery not recorded; it is retried after its lease");
        }
    }

    async fn try_deliver(&self, delivery: &Delivery) -> quire_core::Result<()> {
        let store = self.inner.state.store();
        let Some(target) = store.delivery_target(delivery.webhook_id).await? else {
            // The endpoint was deleted, and its deliveries with it.
            return Ok(());
        };
        if target.disabled {
            store
                .abandon_delivery(delivery.id, "not sent: the endpoint is disabled")
                .await?;
            return Ok(());
        }
        let Some(report) = store.report(delivery.report_id).await? else {
            store
                .abandon_delivery(delivery.id, "not sent: the report no longer exists")
                .await?;
            return Ok(());
        };
        let payload = Payload {
            r#type: delivery.event,
            timestamp: delivery.created_at,
            data: view(&self.inner.state, report).await,
        };
        let sent = self.send(delivery, &target, &payload).await;
        self.record(delivery, sent).await
    }

    /// Signs and POSTs the payload; never follows a redirect.
    async fn send(&self, delivery: &Delivery, target: &DeliveryTarget, payload: &Payload) -> Sent {
        let failed = |error: String| Sent {
            response_status: None,
            error: Some(error),
        };
        let url = match Url::parse(&target.url) {
            Ok(url) => url,
            Err(_) => return failed("the endpoint's URL is not a valid URL".to_owned()),
        };
        // An IP-literal host connects without resolving: check it here.
        if let Some(ip) = url.host().as_ref().and_then(literal_ip)
            && let Err(refused) = self.inner.policy.check(ip)
        {
            return failed(refusal_message(&refused));
        }
        let body = match serde_json::to_vec(payload) {
            Ok(body) => body,
            Err(e) => return failed(format!("the payload could not be encoded: {e}")),
        };
        let id = delivery.id.to_string();
        let timestamp = Utc::now().timestamp();
        let Ok(signature) = signature(target.secret.expose_secret(), &id, timestamp, &body) else {
            return failed("the endpoint's signing secret is malformed".to_owned());
        };
        let response = self
            .inner
            .client
            .post(url)
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status();
                let error = (!status.is_success()).then(|| status_message(status));
                Sent {
                    response_status: Some(status.as_u16()),
                    error,
                }
            }
            Err(e) => failed(self.request_error(&e)),
        }
    }

    /// What went wrong, for the endpoint's owner: the kind of failure, never the address a
    /// name resolved to (that would make webhooks a probe of internal DNS).
    fn request_error(&self, e: &reqwest::Error) -> String {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(error) = cause {
            if let Some(refused) = error.downcast_ref::<RefusedAddress>() {
                tracing::info!(address = %refused.ip, "webhook destination refused");
                return refusal_message(refused);
            }
            cause = error.source();
        }
        let timeout = self.inner.settings.timeout;
        if e.is_timeout() {
            format!(
                "no answer within {}",
                quire_core::duration::display(timeout)
            )
        } else if e.is_connect() {
            "could not connect to the endpoint".to_owned()
        } else {
            "the request to the endpoint failed".to_owned()
        }
    }

    async fn record(&self, delivery: &Delivery, sent: Sent) -> quire_core::Result<()> {
        let store = self.inner.state.store();
        let metrics = self.inner.state.metrics();
        let now = Utc::now();
        let attempts = delivery.attempts + 1;
        let response_status = sent.response_status.map(i32::from);
        let Some(error) = sent.error else {
            let response_status = response_status.unwrap_or(200);
            if store
                .record_attempt(
                    delivery.id,
                    &AttemptOutcome::Delivered { response_status },
                    now,
                )
                .await?
            {
                metrics.webhook_delivery("delivered");
                tracing::info!(attempts, "webhook delivered");
            }
            return Ok(());
        };
        if sent.response_status == Some(StatusCode::GONE.as_u16()) {
            let outcome = AttemptOutcome::Failed {
                response_status,
                error,
            };
            if store.record_attempt(delivery.id, &outcome, now).await? {
                metrics.webhook_delivery("failed");
            }
            let reason = "the endpoint answered 410 Gone";
            if store
                .disable_webhook(delivery.webhook_id, reason, None, now)
                .await?
            {
                tracing::info!(reason, "webhook endpoint disabled");
            }
            return Ok(());
        }
        let settings = &self.inner.settings;
        let deadline = delivery.created_at
            + chrono::Duration::from_std(settings.retry_for).unwrap_or(chrono::Duration::MAX);
        let next = retry_delay(attempts, settings.first_retry)
            .filter(|_| now < deadline)
            .map(|delay| {
                // ±10 % so that a burst of failures does not retry in lockstep.
                let jittered = delay.mul_f64(rand::random_range(0.9..1.1));
                (now + chrono::Duration::from_std(jittered).unwrap_or(chrono::Duration::MAX))
                    .min(deadline)
            });
        match next {
            Some(next_attempt_at) => {
                let outcome = AttemptOutcome::Retry {
                    response_status,
                    error: error.clone(),
                    next_attempt_at,
                };
                if store.record_attempt(delivery.id, &outcome, now).await? {
                    metrics.webhook_delivery("retried");
                    tracing::info!(attempts, %next_attempt_at, error, "webhook delivery failed; retrying");
                }
            }
            None => {
                let outcome = AttemptOutcome::Failed {
                    response_status,
                    error: error.clone(),
                };
                if store.record_attempt(delivery.id, &outcome, now).await? {
                    metrics.webhook_delivery("failed");
                    tracing::warn!(attempts, error, "webhook delivery given up");
                }
                let reason = format!(
                    "a delivery failed for {} without any delivery succeeding; last error: {error}",
                    quire_core::duration::display(settings.retry_for)
                );
                if store
                    .disable_webhook(delivery.webhook_id, &reason, Some(delivery.created_at), now)
                    .await?
                {
                    tracing::warn!(reason, "webhook endpoint disabled");
                }
            }
        }
        Ok(())
    }
}

fn refusal_message(refused: &RefusedAddress) -> String {
    if refused.metadata {
        "not sent: the destination is a cloud metadata address".to_owned()
    } else {
        "not sent: the destination resolves to an address that is not public".to_owned()
    }
}

fn status_message(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    if status.is_redirection() {
        format!(
            "the endpoint answered {} {reason}; redirects are not followed",
            status.as_u16()
        )
    } else {
        format!("the endpoint answered {} {reason}", status.as_u16())
            .trim_end()
            .to_owned()
    }
}
