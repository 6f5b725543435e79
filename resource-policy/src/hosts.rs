//! Per-host usage: a fixed-capacity, open-addressing table of
//! [`HostRecord`]s laid over memory the caller owns (the module's shared
//! zone), keyed by a hash whose seeds live with the table (so a client
//! cannot choose host names that all collide). Plain data only; the caller
//! holds the zone's lock around every call.
//!
//! When the table is full, a new host takes the place of the least
//! recently seen host that is not confined (a confined host is never
//! forgotten while confined); if every host is confined the new one is not
//! counted and the caller logs it.

use crate::checker::Figures;
use crate::confine::{ConfineSpec, Decision, HostUsage, UsageWindow};

/// Host name bytes kept (longer names are cut; the hash covers the whole name).
pub const HOST_INLINE: usize = 64;

/// Why a host is confined (`confined != 0`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfineReason {
    pub since: u64,
    pub usage_ms: u64,
    pub rank: u32,
    /// The load when it was confined, in hundredths.
    pub load: u64,
}

/// One host's usage.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostRecord {
    /// 0: never used.
    pub hash: u64,
    pub last_seen: u64,
    pub requests: u64,
    pub cpu_user_ms: u64,
    pub cpu_sys_ms: u64,
    /// The highest peak of one request.
    pub mem_peak_kb: u64,
    pub window: UsageWindow,
    pub reason: ConfineReason,
    pub confined: u8,
    name_len: u8,
    name: [u8; HOST_INLINE],
}

impl Default for HostRecord {
    fn default() -> HostRecord {
        HostRecord {
            hash: 0,
            last_seen: 0,
            requests: 0,
            cpu_user_ms: 0,
            cpu_sys_ms: 0,
            mem_peak_kb: 0,
            window: UsageWindow::default(),
            reason: ConfineReason::default(),
            confined: 0,
            name_len: 0,
            name: [0; HOST_INLINE],
        }
    }
}

impl HostRecord {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("")
    }

    pub fn is_used(&self) -> bool {
        self.hash != 0
    }
}

/// The normal form of a host for counting: lowercased, without port or
/// trailing dot, at most [`HOST_INLINE`] bytes of `[a-z0-9.-_]`, or an IPv6
/// literal in brackets (anything else is not a host name and is counted as
/// `-`).
pub fn normalize(host: &str) -> String {
    if let Some(literal) = host.strip_prefix('[').and_then(|rest| rest.split(']').next()) {
        let valid = !literal.is_empty()
            && literal.len() + 2 <= HOST_INLINE
            && literal.bytes().all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
        return if valid { format!("[{}]", literal.to_ascii_lowercase()) } else { String::from("-") };
    }
    let host = host.split(':').next().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= HOST_INLINE
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if valid {
        host
    } else {
        String::from("-")
    }
}

/// The table over `records` (whose length is the capacity).
pub struct HostTable<'a> {
    records: &'a mut [HostRecord],
    hasher: ahash::RandomState,
}

/// What `record` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Counted,
    /// A new host took the place of this one.
    Replaced(String),
    /// Every slot holds a confined host: not counted.
    Full,
}

impl<'a> HostTable<'a> {
    pub fn new(records: &'a mut [HostRecord], seeds: [u64; 4]) -> HostTable<'a> {
        HostTable { records, hasher: ahash::RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]) }
    }

    fn hash(&self, host: &str) -> u64 {
        self.hasher.hash_one(host.as_bytes()).max(1)
    }

    /// The slot of `host`, or where the probe for it ended (its first
    /// free slot), as `Err`.
    fn probe(&self, host: &str, hash: u64) -> Result<usize, Option<usize>> {
        let capacity = self.records.len();
        if capacity == 0 {
            return Err(None);
        }
        let start = (hash % capacity as u64) as usize;
        for step in 0..capacity {
            let i = (start + step) % capacity;
            let r = &self.records[i];
            if !r.is_used() {
                return Err(Some(i));
            }
            if r.hash == hash && r.name() == host {
                return Ok(i);
            }
        }
        Err(None)
    }

    pub fn find(&self, host: &str) -> Option<&HostRecord> {
        let host = normalize(host);
        self.probe(&host, self.hash(&host)).ok().map(|i| &self.records[i])
    }

    /// Adds one request's figures to `host` at time `now` (seconds).
    pub fn record(&mut self, host: &str, now: u64, bucket_secs: u64, figures: &Figures) -> Recorded {
        let host = normalize(host);
        let hash = self.hash(&host);
        let (index, outcome) = match self.probe(&host, hash) {
            Ok(i) => (i, Recorded::Counted),
            Err(Some(i)) => (i, Recorded::Counted),
            Err(None) => {
                // full: the least recently seen host that is not confined
                let victim = (0..self.records.len())
                    .filter(|&i| self.records[i].confined == 0)
                    .min_by_key(|&i| self.records[i].last_seen);
                let Some(i) = victim else {
                    return Recorded::Full;
                };
                let old = self.records[i].name().to_string();
                self.remove(i);
                // the removal may have moved entries: probe again
                match self.probe(&host, hash) {
                    Ok(j) | Err(Some(j)) => (j, Recorded::Replaced(old)),
                    Err(None) => return Recorded::Full,
                }
            }
        };
        let r = &mut self.records[index];
        if !r.is_used() {
            *r = HostRecord { hash, name_len: host.len() as u8, ..HostRecord::default() };
            r.name[..host.len()].copy_from_slice(host.as_bytes());
        }
        r.last_seen = now;
        r.requests = r.requests.saturating_add(1);
        r.cpu_user_ms = r.cpu_user_ms.saturating_add(figures.cpu_user_ms);
        r.cpu_sys_ms = r.cpu_sys_ms.saturating_add(figures.cpu_sys_ms);
        r.mem_peak_kb = r.mem_peak_kb.max(figures.mem_peak_kb);
        r.window.add(now, bucket_secs, figures.cpu_user_ms.saturating_add(figures.cpu_sys_ms));
        outcome
    }

    /// Removes slot `i`, re-placing the entries of its probe run after it
    /// (backward-shift deletion, so lookups never stop at a hole).
    fn remove(&mut self, mut i: usize) {
        let capacity = self.records.len();
        self.records[i] = HostRecord::default();
        let mut j = i;
        loop {
            j = (j + 1) % capacity;
            if !self.records[j].is_used() {
                return;
            }
            let home = (self.records[j].hash % capacity as u64) as usize;
            // j stays if its home lies cyclically in (i, j]
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.records[i] = self.records[j];
                self.records[j] = HostRecord::default();
                i = j;
            }
        }
    }

    /// Every used record.
    pub fn records(&self) -> impl Iterator<Item = &HostRecord> {
        self.records.iter().filter(|r| r.is_used())
    }

    /// The hosts as the decision sees them at `now`.
    pub fn usage(&self, now: u64, bucket_secs: u64) -> Vec<HostUsage> {
        self.records()
            .map(|r| HostUsage {
                host: r.name().to_string(),
                usage_ms: r.window.total(now, bucket_secs),
                confined: r.confined != 0,
            })
            .collect()
    }

    /// Marks the decisions' hosts confined or released.
    pub fn apply(&mut self, now: u64, decisions: &[Decision]) {
        for d in decisions {
            let host = match d {
                Decision::Confine { host, .. } | Decision::Release { host, .. } => host.as_str(),
            };
            let hash = self.hash(host);
            let Ok(i) = self.probe(host, hash) else { continue };
            let r = &mut self.records[i];
            match d {
                Decision::Confine { usage_ms, rank, load, .. } => {
                    r.confined = 1;
                    r.reason = ConfineReason { since: now, usage_ms: *usage_ms, rank: *rank, load: *load };
                }
                Decision::Release { .. } => {
                    r.confined = 0;
                    r.reason = ConfineReason::default();
                }
            }
        }
    }

    /// One step of auto-confinement: decide and apply (see [`crate::confine::decide`]).
    pub fn step(
        &mut self,
        spec: &ConfineSpec,
        state: &mut crate::confine::ConfineState,
        now: u64,
        load: u64,
    ) -> Vec<Decision> {
        let hosts = self.usage(now, spec.bucket_secs());
        let decisions = crate::confine::decide(spec, state, now, load, &hosts);
        self.apply(now, &decisions);
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::ConfineState;

    const SEEDS: [u64; 4] = [1, 2, 3, 4];

    fn cpu(ms: u64) -> Figures {
        Figures { cpu_user_ms: ms, cpu_sys_ms: 0, mem_peak_kb: 0 }
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize("Example.COM:8080"), "example.com");
        assert_eq!(normalize("a.test."), "a.test");
        assert_eq!(normalize(""), "-");
        assert_eq!(normalize("evil\"host"), "-");
        assert_eq!(normalize(&"a".repeat(65)), "-");
        // IPv6 literals keep their brackets (not cut at the first ':')
        assert_eq!(normalize("[::1]:8080"), "[::1]");
        assert_eq!(normalize("[2001:DB8::1]"), "[2001:db8::1]");
        assert_eq!(normalize("[::1"), "[::1]");
        assert_eq!(normalize("[]"), "-");
        assert_eq!(normalize("[::g]"), "-");
    }

    #[test]
    fn records_and_finds() {
        let mut slots = vec![HostRecord::default(); 8];
        let mut t = HostTable::new(&mut slots, SEEDS);
        assert_eq!(
            t.record("a.test", 100, 1, &Figures { cpu_user_ms: 5, cpu_sys_ms: 2, mem_peak_kb: 900 }),
            Recorded::Counted
        );
        t.record("A.test:80", 101, 1, &Figures { cpu_user_ms: 1, cpu_sys_ms: 1, mem_peak_kb: 300 });
        let a = t.find("a.test").expect("found");
        assert_eq!((a.requests, a.cpu_user_ms, a.cpu_sys_ms, a.mem_peak_kb), (2, 6, 3, 900));
        assert_eq!(a.window.total(101, 1), 9);
        assert!(t.find("b.test").is_none());
    }

    #[test]
    fn full_table_replaces_the_least_recently_seen_unconfined_host() {
        let mut slots = vec![HostRecord::default(); 4];
        let mut t = HostTable::new(&mut slots, SEEDS);
        for (i, h) in ["h0", "h1", "h2", "h3"].iter().enumerate() {
            t.record(h, 10 + i as u64, 1, &cpu(1));
        }
        // h0 is the oldest but confined: h1 goes
        t.apply(20, &[Decision::Confine { host: "h0".into(), usage_ms: 1, rank: 1, load: 500 }]);
        assert_eq!(t.record("new", 30, 1, &cpu(1)), Recorded::Replaced("h1".into()));
        assert!(t.find("h1").is_none());
        for h in ["h0", "h2", "h3", "new"] {
            assert!(t.find(h).is_some(), "{h} still findable after the shift");
        }
        t.apply(
            31,
            &[
                Decision::Confine { host: "h2".into(), usage_ms: 1, rank: 1, load: 500 },
                Decision::Confine { host: "h3".into(), usage_ms: 1, rank: 1, load: 500 },
                Decision::Confine { host: "new".into(), usage_ms: 1, rank: 1, load: 500 },
            ],
        );
        assert_eq!(t.record("another", 40, 1, &cpu(1)), Recorded::Full, "every slot confined");
    }

    #[test]
    fn many_hosts_stay_findable_through_replacements() {
        let mut slots = vec![HostRecord::default(); 16];
        let mut t = HostTable::new(&mut slots, SEEDS);
        for i in 0..200u64 {
            t.record(&format!("h{i}.test"), i, 1, &cpu(1));
            // the 16 most recent are all there
            for j in i.saturating_sub(15)..=i {
                assert!(t.find(&format!("h{j}.test")).is_some(), "h{j} after inserting h{i}");
            }
        }
        assert_eq!(t.records().count(), 16);
    }

    #[test]
    fn step_confines_the_burning_host_of_three() {
        let spec = ConfineSpec::parse(&["class=slow", "load=2", "top=1", "hold=5", "window=10"]).expect("ok");
        let mut slots = vec![HostRecord::default(); 8];
        let mut t = HostTable::new(&mut slots, SEEDS);
        let mut state = ConfineState::default();
        for s in 100..105 {
            t.record("burn.test", s, 1, &cpu(900));
            t.record("a.test", s, 1, &cpu(3));
            t.record("b.test", s, 1, &cpu(2));
        }
        let d = t.step(&spec, &mut state, 105, 350);
        assert_eq!(d, [Decision::Confine { host: "burn.test".into(), usage_ms: 4500, rank: 1, load: 350 }]);
        let burn = t.find("burn.test").expect("there");
        assert_eq!((burn.confined, burn.reason.rank, burn.reason.usage_ms, burn.reason.since), (1, 1, 4500, 105));
        assert_eq!(t.find("a.test").map(|r| r.confined), Some(0));
        assert!(t.step(&spec, &mut state, 106, 100).is_empty(), "held");
        let d = t.step(&spec, &mut state, 111, 100);
        assert_eq!(d.len(), 1);
        assert_eq!(t.find("burn.test").map(|r| r.confined), Some(0), "released after hold");
    }
}
