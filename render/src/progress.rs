//! Progress shared between a render and the worker's heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::RenderError;

/// Progress of one report, 0–100, shared lock-free between the render (which advances it)
/// and the worker's heartbeat (which reads it), and the worker's way to stop a render:
/// [`Progress::cancel`]. Clones share the same state.
///
/// It only ever moves forward: setting a lower value than the current one does nothing,
/// so the phases of a report (fetch, then render) can each report their own range.
///
/// Renders report progress every few hundred rows, every chunk fetched and every table
/// page laid out; each report fails with [`RenderError::Cancelled`] once the render was
/// cancelled, so a cancel, a lost lease or a shutdown frees the CPU within milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<State>);

#[derive(Debug, Default)]
struct State {
    percent: AtomicU8,
    cancelled: AtomicBool,
}

impl Progress {
    /// A counter at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the counter to `percent` (values above 100 count as 100). Never lowers it.
    pub fn set(&self, percent: u8) {
        self.0
            .percent
            .fetch_max(percent.min(100), Ordering::Relaxed);
    }

    /// The current value, 0–100.
    pub fn get(&self) -> u8 {
        self.0.percent.load(Ordering::Relaxed)
    }

    /// Asks the render to stop at its next progress report.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once [`Progress::cancel`] was called.
    pub fn check(&self) -> Result<(), RenderError> {
        if self.is_cancelled() {
            Err(RenderError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A view of this counter that maps the fraction done of one phase onto `start..=end`.
    pub(crate) fn phase(&self, start: u8, end: u8) -> Phase<'_> {
        Phase {
            progress: self,
            start: start.min(100),
            end: end.clamp(start.min(100), 100),
        }
    }
}

/// One phase of a report's work, covering `start..=end` of its [`Progress`].
pub(crate) struct Phase<'a> {
    progress: &'a Progress,
    start: u8,
    end: u8,
}

impl<'a> Phase<'a> {
    /// Records that `done` of `total` units of this phase are finished; fails once the
    /// render was cancelled.
    pub(crate) fn report(&self, done: u64, total: u64) -> Result<(), RenderError> {
        let fraction = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        };
        let span = f64::from(self.end - self.start);
        // Truncation is deliberate: 100 is only reached when the phase is really done.
        self.progress.set(self.start + (span * fraction) as u8);
        self.progress.check()
    }

    /// A sub-phase covering the fractions `from..=to` (0.0–1.0) of this phase.
    pub(crate) fn sub(&self, from: f64, to: f64) -> Phase<'a> {
        let span = f64::from(self.end - self.start);
        let at = |f: f64| self.start + (span * f.clamp(0.0, 1.0)) as u8;
        self.progress.phase(at(from), at(to))
    }

    /// Marks this phase finished.
    pub(crate) fn finish(&self) {
        self.progress.set(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_clamped_and_never_goes_down() {
        let p = Progress::new();
        assert_eq!(p.get(), 0);
        p.set(40);
        p.set(10);
        assert_eq!(p.get(), 40);
        p.set(250);
        assert_eq!(p.get(), 100);
    }

    #[test]
    fn a_cancelled_render_fails_its_next_report() {
        let p = Progress::new();
        let phase = p.phase(0, 100);
        assert!(phase.report(1, 10).is_ok());
        p.clone().cancel();
        assert!(p.is_cancelled());
        assert!(matches!(phase.report(2, 10), Err(RenderError::Cancelled)));
        assert!(matches!(p.check(), Err(RenderError::Cancelled)));
    }

    #[test]
    fn clones_share_the_counter() {
        let p = Progress::new();
        let q = p.clone();
        q.set(7);
        assert_eq!(p.get(), 7);
    }

    #[test]
    fn phases_map_onto_their_range() {
        let p = Progress::new();
        let phase = p.phase(50, 100);
        phase.report(0, 10).expect("not cancelled");
        assert_eq!(p.get(), 50);
        phase.report(5, 10).expect("not cancelled");
        assert_eq!(p.get(), 75);
        phase.report(0, 0).expect("not cancelled");
        assert_eq!(p.get(), 100);

        let p = Progress::new();
        let sub = p.phase(0, 50).sub(0.0, 0.8);
        sub.report(1, 1).expect("not cancelled");
        assert_eq!(p.get(), 40);
    }
}
