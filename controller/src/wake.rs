//! Waking the controller when a report changes: the `reports_changed` trigger (migration
//! `20261121000002_controller.sql`) sends `NOTIFY quire_report_changed, '<report id>'`
//! whenever a worker moves a report along (claim, progress, retry, completion, failure,
//! cancel), and this stream turns each notification into the `ReportRequest` to reconcile.
//!
//! Notifications are a latency optimisation, never the only path: unfinished requests are
//! requeued every resync interval anyway, and after the listening connection drops (when
//! notifications may have been missed) every unfinished request is woken once.

use std::time::Duration;

use futures::Stream;
use kube::runtime::reflector::{ObjectRef, Store};
use quire_crds::ReportRequest;
use quire_crds::report_request::Phase;
use sqlx::postgres::PgListener;

/// The channel the trigger notifies on, and a connection listening on it: the same the
/// API's held requests are woken by.
pub use quire_core::store::changes::{CHANNEL, listen};

/// The requests whose reports changed, looked up in the controller's cache: by name (the
/// API server names a request after its report id), else by the report id in its spec or
/// status (requests made with kubectl).
pub fn changes(
    listener: PgListener,
    requests: Store<ReportRequest>,
    namespace: String,
) -> impl Stream<Item = ObjectRef<ReportRequest>> + Send + 'static {
    futures::stream::unfold(
        (listener, requests, namespace, Vec::new()),
        |(mut listener, requests, namespace, mut backlog)| async move {
            loop {
                if let Some(next) = backlog.pop() {
                    return Some((next, (listener, requests, namespace, backlog)));
                }
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Some(found) = find(&requests, &namespace, notification.payload()) {
                            return Some((found, (listener, requests, namespace, backlog)));
                        }
                    }
                    // The connection dropped; the next call reconnects and listens again.
                    Ok(None) => {
                        tracing::warn!(
                            "lost the report-change listener; waking every unfinished request"
                        );
                        backlog = unfinished(&requests);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "report-change listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        },
    )
}

fn find(
    requests: &Store<ReportRequest>,
    namespace: &str,
    report_id: &str,
) -> Option<ObjectRef<ReportRequest>> {
    let by_name = requests.get(&ObjectRef::new(report_id).within(namespace));
    let found = by_name.or_else(|| {
        requests.find(|rr| {
            rr.spec.report_id.as_deref() == Some(report_id)
                || rr.status.as_ref().and_then(|s| s.report_id.as_deref()) == Some(report_id)
        })
    })?;
    Some(ObjectRef::from_obj(found.as_ref()))
}

fn unfinished(requests: &Store<ReportRequest>) -> Vec<ObjectRef<ReportRequest>> {
    requests
        .state()
        .iter()
        .filter(|rr| {
            !rr.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(Phase::is_terminal)
        })
        .map(|rr| ObjectRef::from_obj(rr.as_ref()))
        .collect()
}
