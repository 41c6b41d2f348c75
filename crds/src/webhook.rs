//! Completion webhooks: the endpoints users register and the deliveries made to them.
//!
//! Event and status names are contract: they are stored in rows (the database trigger that
//! records deliveries spells events `report.<status>`), sent to receivers and shown by the
//! API, so each has exactly one spelling, here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ReportStatus, UnknownVariant};

/// What happened to a report, as a webhook receiver is told: its move to a terminal state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookEvent {
    #[serde(rename = "report.completed")]
    ReportCompleted,
    #[serde(rename = "report.failed")]
    ReportFailed,
    #[serde(rename = "report.cancelled")]
    ReportCancelled,
}

impl WebhookEvent {
    /// Every event, in declaration order.
    pub const ALL: &'static [WebhookEvent] = &[
        Self::ReportCompleted,
        Self::ReportFailed,
        Self::ReportCancelled,
    ];
    const NAMES: &'static [&'static str] =
        &["report.completed", "report.failed", "report.cancelled"];

    /// The name in JSON, SQL and payloads' `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReportCompleted => "report.completed",
            Self::ReportFailed => "report.failed",
            Self::ReportCancelled => "report.cancelled",
        }
    }

    /// The event a report's move to `status` raises: `None` unless the status is terminal.
    pub fn for_status(status: ReportStatus) -> Option<Self> {
        match status {
            ReportStatus::Completed => Some(Self::ReportCompleted),
            ReportStatus::Failed => Some(Self::ReportFailed),
            ReportStatus::Cancelled => Some(Self::ReportCancelled),
            ReportStatus::Pending | ReportStatus::Queued | ReportStatus::Running => None,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                kind: "WebhookEvent",
                value: s.to_owned(),
                expected: Self::NAMES,
            })
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet accepted by the receiver; `next_attempt_at` says when it is tried (again).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: retried for the whole retry window, or its endpoint was disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            _ => Err(UnknownVariant {
                kind: "DeliveryStatus",
                value: s.to_owned(),
                expected: &["pending", "delivered", "failed"],
            }),
        }
    }
}

/// A registered endpoint, without its secret (which only the dispatcher reads).
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
    /// The last delivery the receiver accepted.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Set when the endpoint was disabled; it then gets no new deliveries.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// An endpoint to register. `secret` is the `whsec_…` signing secret.
#[derive(Clone)]
pub struct NewWebhook {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhook")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One event for one endpoint: its `id` is the `webhook-id` every attempt carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event: WebhookEvent,
    pub report_id: Uuid,
    pub status: DeliveryStatus,
    /// Attempts made (requests sent, or refused before sending).
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's status code on the last attempt, if it answered.
    pub response_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the event happened (the report's transition).
    pub created_at: DateTime<Utc>,
}

/// What an attempt to deliver came to, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered { response_status: i32 },
    /// Failed; tried again at `next_attempt_at`.
    Retry {
        response_status: Option<i32>,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Failed for good.
    Failed {
        response_status: Option<i32>,
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_spelled_report_dot_status() {
        for event in WebhookEvent::ALL {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, event.as_str());
            assert_eq!(event.as_str().parse::<WebhookEvent>().unwrap(), *event);
        }
        for status in [
            ReportStatus::Completed,
            ReportStatus::Failed,
            ReportStatus::Cancelled,
        ] {
            let event = WebhookEvent::for_status(status).unwrap();
            assert_eq!(event.as_str(), format!("report.{status}"));
        }
        assert_eq!(WebhookEvent::for_status(ReportStatus::Running), None);
        let unknown = "report.started".parse::<WebhookEvent>().unwrap_err();
        assert_eq!(unknown.expected, WebhookEvent::NAMES);
    }
}
