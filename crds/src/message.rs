//! The body of a work message: what travels on the work queue (database queue or SQS).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ReportType;

/// Version of [`WorkMessage`] this build writes. Readers reject versions they do not know.
pub const WORK_MESSAGE_VERSION: u32 = 1;

/// "Render report X": a small, versioned JSON document.
///
/// The worker never trusts it for ownership or parameters: it loads the report row by
/// `report_id` and works from that. The other fields are for logs, metrics and traces.
///
/// Readers ignore fields they do not know (a tolerant reader), so an optional field can be
/// added without a new version: a worker of the previous release still reads the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMessage {
    pub version: u32,
    pub report_id: Uuid,
    pub user_id: Uuid,
    pub report_type: ReportType,
    /// The attempt this message asks for (1 for the first dispatch).
    pub attempt: u32,
    /// The W3C `traceparent` of the request that created the report: the worker's spans
    /// join that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl WorkMessage {
    /// A message for the current version.
    pub fn new(report_id: Uuid, user_id: Uuid, report_type: ReportType, attempt: u32) -> Self {
        Self {
            version: WORK_MESSAGE_VERSION,
            report_id,
            user_id,
            report_type,
            attempt,
            traceparent: None,
        }
    }

    /// Carries the trace context `traceparent` (see [`WorkMessage::traceparent`]).
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Serialises the message to its JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a WorkMessage always serialises")
    }

    /// Parses a body, rejecting malformed JSON and versions this build does not understand.
    pub fn from_body(body: &str) -> Result<Self, String> {
        let message: Self =
            serde_json::from_str(body).map_err(|e| format!("malformed work message: {e}"))?;
        if message.version != WORK_MESSAGE_VERSION {
            return Err(format!(
                "unsupported work message version {} (this worker reads {WORK_MESSAGE_VERSION})",
                message.version
            ));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips() {
        let m = WorkMessage::new(Uuid::now_v7(), Uuid::now_v7(), ReportType::Dataset, 2);
        assert_eq!(WorkMessage::from_body(&m.to_body()).unwrap(), m);
    }

    #[test]
    fn the_trace_context_is_optional_and_unknown_fields_are_ignored() {
        let id = Uuid::now_v7();
        let plain = WorkMessage::new(id, id, ReportType::Profile, 1);
        assert!(!plain.to_body().contains("traceparent"));
        let traced = plain.clone().with_traceparent(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ));
        assert_eq!(WorkMessage::from_body(&traced.to_body()).unwrap(), traced);
        let mut body: serde_json::Value = serde_json::from_str(&plain.to_body()).unwrap();
        body["added_later"] = serde_json::json!(true);
        assert_eq!(WorkMessage::from_body(&body.to_string()).unwrap(), plain);
    }

    #[test]
    fn rejects_garbage_and_future_versions() {
        assert!(
            WorkMessage::from_body("not json")
                .unwrap_err()
                .contains("malformed")
        );
        let mut m = WorkMessage::new(Uuid::nil(), Uuid::nil(), ReportType::Profile, 1);
        m.version = 99;
        assert!(
            WorkMessage::from_body(&m.to_body())
                .unwrap_err()
                .contains("version 99")
        );
    }
}
