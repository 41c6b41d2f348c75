//! Retention: finished reports do not stay forever. One pass, run every
//! `QUIRE_RETENTION_INTERVAL` by the API server (and `quire dev`) in every mode:
//!
//! 1. outputs of reports completed more than `QUIRE_OUTPUT_RETENTION` ago (or more than
//!    `QUIRE_RECORD_RETENTION`, whichever is shorter) are deleted from storage, then marked
//!    deleted on the row, so `GET /reports/{id}/download` answers 410 as after a
//!    `ReportRequest`'s deletion;
//! 2. rows of reports finished more than `QUIRE_RECORD_RETENTION` ago whose output is gone
//!    are deleted.
//!
//! Both steps go in batches, oldest first, on partial indexes. Any number of replicas may
//! run passes at once: deleting an object twice is harmless, marking it deleted is
//! conditional, and a row is deleted only once its output is gone. A failure (storage or
//! database down) ends the pass early; the next one carries on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::metrics::RetentionMetrics;
use crate::storage::OutputStorage;
use crate::store::RecordStore;

/// Rows handled per statement.
pub const BATCH: u32 = 200;

/// The retention settings.
#[derive(Clone, Debug, clap::Args)]
pub struct RetentionArgs {
    /// How long a finished report's output is kept (`7d`, `12h`; `0` keeps outputs
    /// forever). After that its download answers 410.
    #[arg(long, env = "QUIRE_OUTPUT_RETENTION", default_value = "7d",
          value_parser = crate::duration::parse)]
    pub output_retention: Duration,

    /// How long a finished report's row (and so its status) is kept (`90d`; `0` keeps rows
    /// forever).
    #[arg(long, env = "QUIRE_RECORD_RETENTION", default_value = "90d",
          value_parser = crate::duration::parse)]
    pub record_retention: Duration,

    /// How often the retention pass runs.
    #[arg(long, env = "QUIRE_RETENTION_INTERVAL", default_value = "10m",
          value_parser = crate::duration::parse)]
    pub retention_interval: Duration,
}

impl Default for RetentionArgs {
    /// The settings' defaults (see [`RetentionPolicy::default`]).
    fn default() -> Self {
        let policy = RetentionPolicy::default();
        Self {
            output_retention: policy.outputs.unwrap_or_default(),
            record_retention: policy.records.unwrap_or_default(),
            retention_interval: policy.every,
        }
    }
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        let kept = |d: Duration| (!d.is_zero()).then_some(d);
        RetentionPolicy {
            outputs: kept(self.output_retention),
            records: kept(self.record_retention),
            every: self.retention_interval.max(Duration::from_secs(1)),
        }
    }
}

/// What is kept how long; `None` is forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub outputs: Option<Duration>,
    pub records: Option<Duration>,
    pub every: Duration,
}

impl Default for RetentionPolicy {
    /// The settings' defaults: outputs 7 days, rows 90 days, a pass every 10 minutes.
    fn default() -> Self {
        Self {
            outputs: Some(Duration::from_secs(7 * 24 * 60 * 60)),
            records: Some(Duration::from_secs(90 * 24 * 60 * 60)),
            every: Duration::from_secs(10 * 60),
        }
    }
}

/// What one pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub outputs: u64,
    pub reports: u64,
}

/// The retention pass over one store and its storage.
pub struct Retention {
    store: Arc<dyn RecordStore>,
    storage: Arc<dyn OutputStorage>,
    policy: RetentionPolicy,
    metrics: RetentionMetrics,
}

impl Retention {
    pub fn new(
        store: Arc<dyn RecordStore>,
        storage: Arc<dyn OutputStorage>,
        policy: RetentionPolicy,
        metrics: RetentionMetrics,
    ) -> Self {
        Self {
            store,
            storage,
            policy,
            metrics,
        }
    }

    /// Runs a pass now and then every `policy.every` until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.policy.outputs.is_none() && self.policy.records.is_none() {
            return;
        }
        loop {
            match self.pass(Utc::now()).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(
                        outputs = swept.outputs,
                        reports = swept.reports,
                        "retention pass"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.policy.every) => {}
            }
        }
    }

    /// One pass as of `now`: every expired output, then every expired row, in batches.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Swept> {
        let mut swept = Swept::default();
        let before = |kept: Duration| {
            chrono::Duration::from_std(kept)
                .ok()
                .and_then(|kept| now.checked_sub_signed(kept))
        };
        // A row past its retention takes its output with it, whatever the output's.
        let output_kept = match (self.policy.outputs, self.policy.records) {
            (Some(outputs), Some(records)) => Some(outputs.min(records)),
            (kept, None) | (None, kept) => kept,
        };
        if let Some(cutoff) = output_kept.and_then(before) {
            loop {
                let batch = self.store.expired_outputs(cutoff, BATCH).await?;
                for (id, key) in &batch {
                    self.storage.delete(key).await?;
                    if self.store.mark_output_deleted(*id, now).await? {
                        swept.outputs += 1;
                        self.metrics.outputs_deleted.inc();
                    }
                }
                if batch.len() < BATCH as usize {
                    break;
                }
            }
        }
        if let Some(cutoff) = self.policy.records.and_then(before) {
            loop {
                let deleted = self.store.delete_expired_reports(cutoff, BATCH).await?;
                swept.reports += deleted;
                self.metrics.reports_deleted.inc_by(deleted);
                if deleted < u64::from(BATCH) {
                    break;
                }
            }
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        retention: RetentionArgs,
    }

    #[test]
    fn the_defaults_match_the_documented_policy_and_zero_keeps_forever() {
        let defaults = Cli::parse_from(["test"]).retention;
        assert_eq!(defaults.policy(), RetentionPolicy::default());
        assert_eq!(defaults.policy(), RetentionArgs::default().policy());
        let forever = Cli::parse_from([
            "test",
            "--output-retention",
            "0",
            "--record-retention",
            "30d",
            "--retention-interval",
            "90s",
        ])
        .retention
        .policy();
        assert_eq!(forever.outputs, None);
        assert_eq!(forever.records, Some(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(forever.every, Duration::from_secs(90));
    }
}
