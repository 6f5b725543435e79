//! The runner table and its rules: one owner per runner for life, one
//! request at a time, at most `max_per_owner` per owner and `max_runners`
//! in all (counting runners being killed until they are reaped, so the
//! process table never holds more), least recently used idle runner
//! reaped to make room.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Which runners can serve a request: same owner, site and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerKey {
    pub uid: u32,
    pub gid: u32,
    pub docroot: PathBuf,
    pub kind: String,
}

/// A worker connection, by the supervisor's own number.
pub type ClientId = u64;

/// One runner process.
#[derive(Debug)]
pub struct Runner {
    pub id: u64,
    pub pid: i32,
    pub key: RunnerKey,
    pub socket: PathBuf,
    /// The worker connection whose request holds it.
    pub lessee: Option<ClientId>,
    pub requests: u64,
    pub last_used: Instant,
    /// SIGKILL sent; still counted until reaped.
    pub killing: bool,
    /// Its request failed: killed at this time unless it exits first (so a
    /// runner that died on its own is logged as such).
    pub discard_at: Option<Instant>,
    /// Its worker was asked to give it back (`G`) since it was leased.
    pub asked_back: bool,
    /// Its worker answered that it is busy (`B`): it comes back when its request ends.
    pub busy: bool,
    /// The resource class its current request runs in (it is in that group).
    pub class: Option<String>,
    /// The class group's OOM kill count when it entered (see `Classes::oom_kills`).
    pub class_oom_kills: Option<u64>,
}

/// What to do for a request that wants a runner.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// This idle runner is handed over.
    Hit(u64),
    /// This runner of the same key is held by another worker, maybe idle:
    /// ask for it (`G`, unless asked already) and wait for the answer.
    Reclaim(u64),
    /// Room for a new runner: spawn one.
    Spawn,
    /// Kill this idle runner to make room, then wait for it to be reaped.
    Evict(u64),
    /// Nothing to do but wait for a runner to be released or reaped.
    Wait,
}

#[derive(Default)]
pub struct RunnerTable {
    runners: BTreeMap<u64, Runner>,
    next_id: u64,
}

impl RunnerTable {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn insert(&mut self, runner: Runner) {
        self.runners.insert(runner.id, runner);
    }

    pub fn get(&self, id: u64) -> Option<&Runner> {
        self.runners.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Runner> {
        self.runners.get_mut(&id)
    }

    pub fn remove_pid(&mut self, pid: i32) -> Option<Runner> {
        let id = self.runners.values().find(|r| r.pid == pid)?.id;
        self.runners.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Runner> {
        self.runners.values()
    }

    pub fn len(&self) -> usize {
        self.runners.len()
    }

    fn idle(&self) -> impl Iterator<Item = &Runner> {
        self.runners.values().filter(|r| r.lessee.is_none() && !r.killing)
    }

    /// The rule for one request of worker `client`.
    pub fn decide(&self, key: &RunnerKey, client: ClientId, max_runners: usize, max_per_owner: usize) -> Decision {
        if let Some(runner) = self.idle().filter(|r| &r.key == key).max_by_key(|r| r.last_used) {
            return Decision::Hit(runner.id);
        }
        // workers keep runners idle between requests: another worker's may be free
        // (this worker's own are busy, or it would not ask)
        let mut held_elsewhere = self
            .runners
            .values()
            .filter(|r| &r.key == key && !r.killing && !r.busy && r.lessee.is_some_and(|c| c != client));
        if let Some(runner) = held_elsewhere.next() {
            return Decision::Reclaim(runner.id);
        }
        let owner_count = self.runners.values().filter(|r| r.key.uid == key.uid).count();
        if owner_count >= max_per_owner {
            // the owner's own idle runner of another site or kind makes room
            return match self.idle().filter(|r| r.key.uid == key.uid).min_by_key(|r| r.last_used) {
                Some(runner) => Decision::Evict(runner.id),
                None => Decision::Wait,
            };
        }
        if self.runners.len() >= max_runners {
            return match self.idle().min_by_key(|r| r.last_used) {
                Some(runner) => Decision::Evict(runner.id),
                None => Decision::Wait,
            };
        }
        Decision::Spawn
    }

    /// For a request that must wait (`Decision::Wait`): the leased runners
    /// whose workers should give them back, since a worker keeps a runner
    /// between requests and may be keeping it idle. At the owner's cap: all
    /// the owner's runners not asked yet; at the total cap: the least
    /// recently leased runner not asked yet, unless as many are already
    /// asked for as there are `waiting` requests.
    pub fn to_ask_back(&self, key: &RunnerKey, max_runners: usize, max_per_owner: usize, waiting: usize) -> Vec<u64> {
        let askable = || self.runners.values().filter(|r| r.lessee.is_some() && !r.asked_back && !r.killing);
        let owner_count = self.runners.values().filter(|r| r.key.uid == key.uid).count();
        if owner_count >= max_per_owner {
            return askable().filter(|r| r.key.uid == key.uid).map(|r| r.id).collect();
        }
        let outstanding = self.runners.values().filter(|r| r.lessee.is_some() && r.asked_back && !r.killing).count();
        if self.runners.len() >= max_runners && outstanding < waiting {
            return askable().min_by_key(|r| r.last_used).map(|r| r.id).into_iter().collect();
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: u32) -> RunnerKey {
        RunnerKey { uid, gid: uid, docroot: PathBuf::from(format!("/srv/{uid}")), kind: ".php".into() }
    }

    fn add(table: &mut RunnerTable, uid: u32, lessee: Option<ClientId>) -> u64 {
        let id = table.next_id();
        table.insert(Runner {
            id,
            pid: id as i32 + 100,
            key: key(uid),
            socket: PathBuf::new(),
            lessee,
            requests: 0,
            last_used: Instant::now(),
            killing: false,
            discard_at: None,
            asked_back: false,
            busy: false,
            class: None,
            class_oom_kills: None,
        });
        id
    }

    #[test]
    fn idle_runner_of_the_same_key_is_a_hit() {
        let mut t = RunnerTable::default();
        add(&mut t, 1001, Some(1));
        let idle = add(&mut t, 1001, None);
        assert_eq!(t.decide(&key(1001), 9, 8, 4), Decision::Hit(idle));
        assert_eq!(t.decide(&key(1002), 9, 8, 4), Decision::Spawn);
    }

    #[test]
    fn per_owner_cap_waits_or_evicts_own() {
        let mut t = RunnerTable::default();
        let a = add(&mut t, 1001, Some(1));
        let b = add(&mut t, 1001, Some(2));
        // both answered `B`: busy with a request each
        t.get_mut(a).unwrap().busy = true;
        t.get_mut(b).unwrap().busy = true;
        assert_eq!(t.decide(&key(1001), 9, 8, 2), Decision::Wait);
        let mut other_site = key(1001);
        other_site.docroot = PathBuf::from("/srv/other");
        let mut t2 = RunnerTable::default();
        add(&mut t2, 1001, Some(1));
        let idle = add(&mut t2, 1001, None);
        assert_eq!(t2.decide(&other_site, 9, 8, 2), Decision::Evict(idle));
    }

    #[test]
    fn total_cap_evicts_least_recently_used_idle() {
        let mut t = RunnerTable::default();
        let oldest = add(&mut t, 1001, None);
        add(&mut t, 1002, None);
        t.get_mut(oldest).unwrap().last_used -= std::time::Duration::from_secs(5);
        assert_eq!(t.decide(&key(1003), 9, 2, 4), Decision::Evict(oldest));
        // a runner being killed still counts: wait for its reaping
        t.get_mut(oldest).unwrap().killing = true;
        t.get_mut(oldest + 1).unwrap().lessee = Some(3);
        assert_eq!(t.decide(&key(1003), 9, 2, 4), Decision::Wait);
    }

    #[test]
    fn another_workers_runner_is_reclaimed_unless_busy() {
        let mut t = RunnerTable::default();
        let held = add(&mut t, 1001, Some(1));
        // worker 2 asks: worker 1 may keep it idle
        assert_eq!(t.decide(&key(1001), 2, 8, 4), Decision::Reclaim(held));
        t.get_mut(held).unwrap().asked_back = true;
        assert_eq!(t.decide(&key(1001), 2, 8, 4), Decision::Reclaim(held), "the answer is coming");
        // worker 1 answered busy: a new runner (the cap allows)
        t.get_mut(held).unwrap().busy = true;
        assert_eq!(t.decide(&key(1001), 2, 8, 4), Decision::Spawn);
        // worker 1 itself asks: its own runners are busy
        t.get_mut(held).unwrap().busy = false;
        t.get_mut(held).unwrap().asked_back = false;
        assert_eq!(t.decide(&key(1001), 1, 8, 4), Decision::Spawn);
    }

    #[test]
    fn waiting_asks_for_kept_runners() {
        // owner's cap (the owner's other site): every leased runner of the owner not asked yet
        let mut other_site = key(1001);
        other_site.docroot = PathBuf::from("/srv/other");
        let mut t = RunnerTable::default();
        let a = add(&mut t, 1001, Some(1));
        let b = add(&mut t, 1001, Some(2));
        add(&mut t, 1002, Some(1));
        assert_eq!(t.decide(&other_site, 9, 8, 2), Decision::Wait);
        assert_eq!(t.to_ask_back(&other_site, 8, 2, 1), vec![a, b]);
        t.get_mut(a).unwrap().asked_back = true;
        assert_eq!(t.to_ask_back(&other_site, 8, 2, 1), vec![b]);
        // total cap: the least recently leased one, once
        let mut t = RunnerTable::default();
        let old = add(&mut t, 1001, Some(1));
        let new = add(&mut t, 1002, Some(1));
        t.get_mut(old).unwrap().last_used -= std::time::Duration::from_secs(5);
        assert_eq!(t.to_ask_back(&key(1003), 2, 4, 1), vec![old]);
        t.get_mut(old).unwrap().asked_back = true;
        // one waiting request, one runner already asked for: no more
        assert!(t.to_ask_back(&key(1003), 2, 4, 1).is_empty());
        assert_eq!(t.to_ask_back(&key(1003), 2, 4, 2), vec![new]);
        // below both caps: nothing to ask
        assert!(t.to_ask_back(&key(1003), 8, 4, 1).is_empty());
    }
}
