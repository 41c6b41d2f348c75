//! The body of a work message: what travels on the work queue (database queue or SQS).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ReportType;

/// Version of [`WorkMessage`] this build writes. Readers reject versions they do not know.
pub const WORK_MESSAGE_VERSION: u32 = 1;

/// "Render report X": a small, versioned JSON document.
///
/// The worker never trusts it for ownership or parameters: it loads the report row by
/// `report_id` and works from that. The other fields are for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMessage {
    pub version: u32,
    pub report_id: Uuid,
    pub user_id: Uuid,
    pub report_type: ReportType,
    /// The attempt this message asks for (1 for the first dispatch).
    pub attempt: u32,
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
        }
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
