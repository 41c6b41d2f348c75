//! Rows a test starts from, written through the record store itself.

use chrono::Utc;
use quire_core::model::{Inserted, NewReport, NewUser, Report};
use quire_core::store::RecordStore;
use quire_core::{ReportFormat, ReportType};
use serde_json::Value;
use uuid::Uuid;

/// A new user with an address of its own; returns its id.
pub async fn new_user(store: &dyn RecordStore) -> Uuid {
    let id = Uuid::now_v7();
    store
        .create_user(NewUser {
            id,
            email: format!("{}@example.com", id.simple()),
            password_hash: "$2b$04$unused".into(),
            created_at: Utc::now(),
        })
        .await
        .expect("create a user");
    id
}

/// A new `pending` report of `user_id`, checked and stored as `POST /reports` stores it.
pub async fn new_report(
    store: &dyn RecordStore,
    user_id: Uuid,
    report_type: ReportType,
    format: ReportFormat,
    parameters: Value,
) -> Report {
    let report = NewReport::new(Uuid::now_v7(), user_id, report_type, format, &parameters)
        .expect("a valid report request");
    let inserted = store.insert_report(report).await.expect("insert a report");
    let Inserted::Created(report) = inserted else {
        panic!("a new report, got {inserted:?}")
    };
    report
}
