//! Waiting for a report to change, without polling and without holding a connection.
//!
//! The store already says when a report changes: on Postgres the `reports_changed` trigger
//! sends `NOTIFY quire_report_changed, '<report id>'` (migration
//! `20261121000002_controller.sql`); on SQLite, where every writer is this process, the
//! store publishes the id in process after each change ([`ChangeFeed::Local`]).
//! [`ReportChanges`] turns that feed into per-report wake-ups: one listening connection
//! (or one in-process subscription) for the whole process, however many requests wait,
//! and each change wakes only the waiters of that report.
//!
//! A wake-up says "look again", never "it finished": a waiter re-reads the report. When
//! notifications may have been missed (the listening connection dropped, the in-process
//! channel overflowed), every waiter is woken once to re-read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

/// The channel Postgres' `reports_changed` trigger notifies on; the payload is the id.
pub const CHANNEL: &str = "quire_report_changed";

/// Ids a [`ChangeFeed::Local`] holds for slow subscribers before they miss some (and then
/// wake every waiter instead).
const LOCAL_CAPACITY: usize = 1024;

/// Where a process learns that reports changed.
#[derive(Clone, Debug)]
pub enum ChangeFeed {
    /// `LISTEN quire_report_changed` on a connection of its own.
    Postgres(PgPool),
    /// Ids published in process by the store that made the change (SQLite).
    Local(broadcast::Sender<Uuid>),
}

impl ChangeFeed {
    /// A new in-process feed.
    pub fn local() -> Self {
        Self::Local(broadcast::channel(LOCAL_CAPACITY).0)
    }

    /// Tells this process' waiters that report `id` changed (in-process feeds only; the
    /// Postgres trigger speaks for itself).
    pub fn publish(&self, id: Uuid) {
        if let Self::Local(sender) = self {
            // No subscriber is fine: nobody is waiting.
            let _ = sender.send(id);
        }
    }
}

/// Per-report wake-ups from a [`ChangeFeed`]. Cheap to clone; the listener starts with the
/// first [`watch`](Self::watch) and stops when the last clone is dropped.
#[derive(Clone)]
pub struct ReportChanges {
    hub: Arc<Hub>,
}

struct Hub {
    feed: ChangeFeed,
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
    /// Started once, on first use (so building one needs no runtime).
    listener: OnceLock<DropGuard>,
}

impl std::fmt::Debug for ReportChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportChanges")
            .field("watched", &self.watched())
            .finish_non_exhaustive()
    }
}

impl ReportChanges {
    pub fn new(feed: ChangeFeed) -> Self {
        Self {
            hub: Arc::new(Hub {
                feed,
                waiters: Mutex::new(HashMap::new()),
                listener: OnceLock::new(),
            }),
        }
    }

    /// Starts watching report `id`: [`ReportWatch::changed`] resolves at its next change.
    /// Register before reading the report, so a change in between is not missed.
    pub fn watch(&self, id: Uuid) -> ReportWatch {
        self.hub.listener.get_or_init(|| {
            let stop = CancellationToken::new();
            // Subscribed here, not in the task: nothing published after this call is missed.
            let source = match &self.hub.feed {
                ChangeFeed::Local(sender) => Source::Local(sender.subscribe()),
                ChangeFeed::Postgres(pool) => Source::Postgres(pool.clone()),
            };
            tokio::spawn(pump(source, Arc::downgrade(&self.hub), stop.clone()));
            stop.drop_guard()
        });
        let notify = self
            .hub
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        ReportWatch {
            hub: self.hub.clone(),
            id,
            notify,
        }
    }

    /// How many reports someone is waiting on right now.
    pub fn watched(&self) -> usize {
        self.hub.lock().len()
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Notify>>> {
        // The map stays consistent through a panic elsewhere: plain inserts and removes.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, id: Uuid) {
        if let Some(notify) = self.lock().get(&id) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }
}

/// Interest in one report's changes; dropping it stops watching.
pub struct ReportWatch {
    hub: Arc<Hub>,
    id: Uuid,
    notify: Arc<Notify>,
}

impl ReportWatch {
    /// A future that resolves at the report's next change (or when changes may have been
    /// missed). Create it, then read the report, then await it: a change after the read is
    /// never lost.
    pub fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for ReportWatch {
    fn drop(&mut self) {
        let mut waiters = self.hub.lock();
        // The map's reference and ours: we are the last waiter of this report.
        if Arc::strong_count(&self.notify) == 2 {
            waiters.remove(&self.id);
        }
    }
}

/// What the listener reads.
enum Source {
    Local(broadcast::Receiver<Uuid>),
    Postgres(PgPool),
}

/// Delivers the feed's notifications to the hub's waiters until the hub is gone.
async fn pump(source: Source, hub: std::sync::Weak<Hub>, stop: CancellationToken) {
    match source {
        Source::Local(mut changes) => loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = changes.recv() => next,
            };
            let Some(hub) = hub.upgrade() else { return };
            match next {
                Ok(id) => hub.wake(id),
                Err(broadcast::error::RecvError::Lagged(_)) => hub.wake_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        },
        Source::Postgres(pool) => {
            let mut listener = None;
            loop {
                if listener.is_none() {
                    let connected = tokio::select! {
                        () = stop.cancelled() => return,
                        connected = listen(&pool) => connected,
                    };
                    match connected {
                        Ok(l) => {
                            listener = Some(l);
                            // Changes made while nobody listened: everyone looks again.
                            if let Some(hub) = hub.upgrade() {
                                hub.wake_all();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot listen for report changes; retrying");
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            }
                        }
                    }
                }
                let Some(active) = listener.as_mut() else {
                    continue;
                };
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = active.try_recv() => next,
                };
                let Some(hub) = hub.upgrade() else { return };
                match next {
                    Ok(Some(notification)) => {
                        if let Ok(id) = notification.payload().parse() {
                            hub.wake(id);
                        }
                    }
                    // The connection dropped: the listener reconnects on the next call.
                    Ok(None) => hub.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "report-change listener failed; reconnecting");
                        listener = None;
                        hub.wake_all();
                    }
                }
            }
        }
    }
}

/// A connection listening on [`CHANNEL`] (the controller's wake-ups use it too).
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_the_waiters_of_that_report_only() {
        let feed = ChangeFeed::local();
        let changes = ReportChanges::new(feed.clone());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let watch_a = changes.watch(a);
        let watch_b = changes.watch(b);
        let (changed_a, changed_b) = (watch_a.changed(), watch_b.changed());
        feed.publish(a);
        tokio::time::timeout(Duration::from_secs(5), changed_a)
            .await
            .expect("the waiter of the changed report is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), changed_b)
                .await
                .is_err(),
            "another report's waiter sleeps on"
        );
        assert_eq!(changes.watched(), 2);
        drop(watch_a);
        drop(watch_b);
        assert_eq!(changes.watched(), 0, "dropped watches are forgotten");
    }

    #[tokio::test]
    async fn a_change_between_registering_and_awaiting_is_not_missed() {
        let feed = ChangeFeed::local();
        let changes = ReportChanges::new(feed.clone());
        let id = Uuid::now_v7();
        let watch = changes.watch(id);
        let changed = watch.changed();
        feed.publish(id);
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::time::timeout(Duration::from_secs(1), changed)
            .await
            .expect("the change made before awaiting still wakes");
    }
}
