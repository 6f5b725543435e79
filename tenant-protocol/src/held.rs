//! The runners a worker holds: handed over by the supervisor, serving one
//! of the worker's requests (busy) or kept idle for the worker's next
//! request of the same owner, site and kind, so that a busy site costs no
//! round trip to the supervisor per request. A kept runner still serves
//! one request at a time (a request takes it only when it is idle), and
//! goes back to the supervisor when its budget of requests is spent
//! (`tenant_max_requests`), when it has been idle for [`KEEP_IDLE_MS`],
//! when the supervisor asks for it (`G`), or when the worker exits.
//! Pure bookkeeping, here next to the messages it decides (so it is
//! unit-tested; the nginx module's crate cannot run tests outside nginx):
//! the worker's link (`src/tenants/link.rs`) sends them.

use std::collections::HashMap;

/// How long an idle runner stays with the worker before it goes back to the
/// supervisor (at most half of `tenant_idle_timeout`, so the idle reaping
/// still happens about when configured).
pub const KEEP_IDLE_MS: u64 = 1000;

/// Which requests a runner can serve: the supervisor's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: String,
    pub uid: u32,
    pub gid: u32,
    pub docroot: Vec<u8>,
}

/// What a request needs to reach its runner.
#[derive(Debug, Clone)]
pub struct Runner {
    pub id: u64,
    pub pid: i32,
    pub uid: u32,
    pub socket: Vec<u8>,
}

#[derive(Debug)]
struct Lease {
    key: Key,
    runner: Runner,
    /// Requests it may still serve (None: no limit).
    budget: Option<u64>,
    /// Requests it served since it was handed over.
    served: u64,
    busy: bool,
    /// The supervisor wants it back once its request ends.
    wanted: bool,
    /// When it last became idle (nginx's msec clock).
    idle_since: u64,
}

/// The answer to the supervisor's `G`.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// It was idle: send `R <runner> <served>` now.
    Now { served: u64 },
    /// Busy: send `B <runner>`; it goes back when its request ends.
    Busy,
    /// Not held (its `R` or `K` is on the way).
    Unknown,
}

/// What to do with a runner whose request has ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Kept idle for the next request.
    Kept,
    /// Send `R <runner> <served>`.
    Release { served: u64 },
    /// Send `K <runner>` (the request failed; the runner may still be busy).
    Discard,
    /// Not held (its lease ended while the request ran: the supervisor
    /// connection was lost).
    Unknown,
}

#[derive(Debug, Default)]
pub struct Held {
    leases: HashMap<u64, Lease>,
}

impl Held {
    /// An idle runner for `key`, now busy with a request.
    pub fn take(&mut self, key: &Key) -> Option<Runner> {
        let lease = self.leases.values_mut().find(|l| !l.busy && !l.wanted && &l.key == key)?;
        lease.busy = true;
        Some(lease.runner.clone())
    }

    /// A runner just handed over by the supervisor, busy with the request that asked.
    pub fn insert(&mut self, key: Key, runner: Runner, budget: u64) {
        let budget = (budget > 0).then_some(budget);
        let lease = Lease { key, runner, budget, served: 0, busy: true, wanted: false, idle_since: 0 };
        self.leases.insert(lease.runner.id, lease);
    }

    /// The request on runner `id` has ended (`failed`: 502, 504, aborted).
    /// `keep`: the worker may keep it idle (false while it exits).
    pub fn finish(&mut self, id: u64, failed: bool, keep: bool, now: u64) -> Finished {
        let Some(lease) = self.leases.get_mut(&id) else {
            return Finished::Unknown;
        };
        lease.served += 1;
        lease.busy = false;
        lease.idle_since = now;
        let spent = lease.budget.is_some_and(|b| lease.served >= b);
        if failed {
            self.leases.remove(&id);
            return Finished::Discard;
        }
        if spent || lease.wanted || !keep {
            let served = lease.served;
            self.leases.remove(&id);
            return Finished::Release { served };
        }
        Finished::Kept
    }

    /// The supervisor wants runner `id` back.
    pub fn want(&mut self, id: u64) -> Wanted {
        let Some(lease) = self.leases.get_mut(&id) else {
            return Wanted::Unknown;
        };
        if lease.busy {
            lease.wanted = true;
            return Wanted::Busy;
        }
        let served = lease.served;
        self.leases.remove(&id);
        Wanted::Now { served }
    }

    /// Idle runners kept at least `keep_ms` (all idle ones when `keep_ms` is 0),
    /// removed, with the requests each served.
    pub fn expire(&mut self, now: u64, keep_ms: u64) -> Vec<(u64, u64)> {
        let expired: Vec<(u64, u64)> = self
            .leases
            .values()
            .filter(|l| !l.busy && now.saturating_sub(l.idle_since) >= keep_ms)
            .map(|l| (l.runner.id, l.served))
            .collect();
        for (id, _) in &expired {
            self.leases.remove(id);
        }
        expired
    }

    /// Some runner is kept idle.
    pub fn any_idle(&self) -> bool {
        self.leases.values().any(|l| !l.busy)
    }

    /// The supervisor is gone, and its runners with it.
    pub fn clear(&mut self) {
        self.leases.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: u32) -> Key {
        Key { kind: ".php".into(), uid, gid: uid, docroot: format!("/srv/{uid}").into_bytes() }
    }

    fn runner(id: u64) -> Runner {
        Runner { id, pid: id as i32 + 100, uid: 1001, socket: b"/run/r.sock".to_vec() }
    }

    #[test]
    fn kept_runner_serves_the_next_request_one_at_a_time() {
        let mut h = Held::default();
        h.insert(key(1001), runner(1), 0);
        assert!(h.take(&key(1001)).is_none(), "busy: not handed to a second request");
        assert_eq!(h.finish(1, false, true, 10), Finished::Kept);
        assert!(h.take(&key(1002)).is_none(), "another owner's request never gets it");
        assert_eq!(h.take(&key(1001)).map(|r| r.id), Some(1));
        assert!(h.take(&key(1001)).is_none());
    }

    #[test]
    fn budget_failure_and_exit_give_it_back() {
        let mut h = Held::default();
        h.insert(key(1001), runner(1), 2);
        assert_eq!(h.finish(1, false, true, 0), Finished::Kept);
        h.take(&key(1001));
        assert_eq!(h.finish(1, false, true, 0), Finished::Release { served: 2 });
        h.insert(key(1001), runner(2), 0);
        assert_eq!(h.finish(2, true, true, 0), Finished::Discard);
        assert_eq!(h.finish(2, false, true, 0), Finished::Unknown);
        h.insert(key(1001), runner(3), 0);
        assert_eq!(h.finish(3, false, false, 0), Finished::Release { served: 1 });
    }

    #[test]
    fn wanted_back_now_when_idle_or_after_its_request() {
        let mut h = Held::default();
        h.insert(key(1001), runner(1), 0);
        assert_eq!(h.want(1), Wanted::Busy);
        assert_eq!(h.finish(1, false, true, 0), Finished::Release { served: 1 });
        h.insert(key(1001), runner(2), 0);
        h.finish(2, false, true, 0);
        assert_eq!(h.want(2), Wanted::Now { served: 1 }, "idle: at once");
        assert!(h.take(&key(1001)).is_none());
        assert_eq!(h.want(7), Wanted::Unknown);
    }

    #[test]
    fn idle_ones_expire() {
        let mut h = Held::default();
        h.insert(key(1001), runner(1), 0);
        h.insert(key(1002), runner(2), 0);
        h.finish(1, false, true, 100);
        assert!(h.expire(600, 1000).is_empty());
        assert_eq!(h.expire(1100, 1000), vec![(1, 1)]);
        assert!(!h.any_idle(), "runner 2 is busy");
        h.finish(2, false, true, 1200);
        assert_eq!(h.expire(1200, 0), vec![(2, 1)]);
    }
}
