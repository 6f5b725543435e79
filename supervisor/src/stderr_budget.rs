//! How many stderr lines each owner's runners may put in the error log: a
//! token bucket per uid, so one tenant printing in a loop cannot fill the
//! disk or bury everyone else's lines. What is dropped is counted and said
//! in one line, at most once a second per owner.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lines per second an owner may log, on average.
pub const LINES_PER_SECOND: f64 = 50.0;
/// Lines an owner may log at once after a quiet while.
pub const BURST: f64 = 200.0;

struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    /// The runner whose line was dropped last (named in the report).
    dropped_pid: i32,
    /// When dropped lines were last reported.
    reported: Instant,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; first say how many lines were dropped before it (when any).
    Log { dropped_before: u64 },
    /// Over the budget: counted, not logged.
    Drop,
}

#[derive(Default)]
pub struct StderrBudget {
    buckets: HashMap<u32, Bucket>,
}

impl StderrBudget {
    pub fn line(&mut self, uid: u32, pid: i32, now: Instant) -> Verdict {
        let bucket = self.buckets.entry(uid).or_insert(Bucket {
            tokens: BURST,
            refilled: now,
            dropped: 0,
            dropped_pid: pid,
            reported: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * LINES_PER_SECOND).min(BURST);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            bucket.dropped_pid = pid;
            return Verdict::Drop;
        }
        bucket.tokens -= 1.0;
        let dropped_before = std::mem::take(&mut bucket.dropped);
        if dropped_before > 0 {
            bucket.reported = now;
        }
        Verdict::Log { dropped_before }
    }

    /// (uid, pid, lines) for each owner with dropped lines not reported in
    /// the last second; they count as reported now.
    pub fn due_reports(&mut self, now: Instant) -> Vec<(u32, i32, u64)> {
        let mut due = Vec::new();
        for (uid, b) in &mut self.buckets {
            if b.dropped > 0 && now.saturating_duration_since(b.reported) >= Duration::from_secs(1) {
                due.push((*uid, b.dropped_pid, std::mem::take(&mut b.dropped)));
                b.reported = now;
            }
        }
        due
    }

    /// Forgets owners whose bucket is full again (nothing owed, nothing
    /// dropped), so the table does not grow with every owner ever seen.
    pub fn forget_idle(&mut self, now: Instant) {
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
            b.dropped > 0 || b.tokens + elapsed * LINES_PER_SECOND < BURST
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut budget = StderrBudget::default();
        let t0 = Instant::now();
        for _ in 0..BURST as u32 {
            assert_eq!(budget.line(7, 70, t0), Verdict::Log { dropped_before: 0 });
        }
        assert_eq!(budget.line(7, 70, t0), Verdict::Drop);
        assert_eq!(budget.line(7, 70, t0), Verdict::Drop);
        // another owner is not affected
        assert_eq!(budget.line(8, 80, t0), Verdict::Log { dropped_before: 0 });
        // a second later: LINES_PER_SECOND more, the first says what was dropped
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(budget.line(7, 71, t1), Verdict::Log { dropped_before: 2 });
        for _ in 1..LINES_PER_SECOND as u32 {
            assert_eq!(budget.line(7, 71, t1), Verdict::Log { dropped_before: 0 });
        }
        assert_eq!(budget.line(7, 71, t1), Verdict::Drop);
        // reported at most once a second: t1 said "2 dropped" already
        assert_eq!(budget.due_reports(t1 + Duration::from_millis(500)), vec![]);
        assert_eq!(budget.due_reports(t1 + Duration::from_secs(1)), vec![(7, 71, 1)]);
        assert_eq!(budget.due_reports(t1 + Duration::from_secs(3)), vec![]);
    }

    #[test]
    fn idle_owners_are_forgotten() {
        let mut budget = StderrBudget::default();
        let t0 = Instant::now();
        budget.line(7, 70, t0);
        budget.forget_idle(t0);
        assert_eq!(budget.buckets.len(), 1);
        budget.forget_idle(t0 + Duration::from_secs(10));
        assert!(budget.buckets.is_empty());
    }
}
