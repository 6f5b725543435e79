//! Automatic confinement (thesis §7): `resource_auto_confine class=<name>
//! load=<threshold> top=<n> hold=<seconds> [window=<seconds>]
//! [load_source=<file>];`. Each host's CPU time is summed over a sliding
//! window; while the load is above the threshold the top-n hosts by that
//! sum are confined (their requests go to the class); once the load has
//! been at or below the threshold for `hold` seconds, every confined host
//! is released. A host confined while the load is high stays confined
//! until then, even if it drops out of the top-n (no flapping between
//! hosts of similar usage).

use crate::units::{format_load, parse_load, parse_seconds};

/// Buckets of the sliding window.
pub const BUCKETS: usize = 10;
/// Most hosts `top=` may name.
pub const MAX_TOP: u32 = 1000;

/// One `resource_auto_confine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfineSpec {
    pub class: String,
    /// The threshold in hundredths of a load average.
    pub load: u64,
    pub top: u32,
    pub hold_secs: u64,
    /// The window the usage is summed over (a multiple of [`BUCKETS`] seconds).
    pub window_secs: u64,
    /// `load_source=`: a file in `/proc/loadavg` format (tests, or a load
    /// computed elsewhere); `None`: `/proc/loadavg`.
    pub load_source: Option<String>,
}

impl ConfineSpec {
    pub fn parse(params: &[&str]) -> Result<ConfineSpec, String> {
        let (mut class, mut load, mut top, mut hold, mut window, mut source) = (None, None, None, None, None, None);
        for param in params {
            let (key, value) = param.split_once('=').ok_or_else(|| format!("invalid parameter \"{param}\""))?;
            let slot_taken = match key {
                "class" => class.replace(value.to_string()).is_some(),
                "load" => load.replace(value).is_some(),
                "top" => top.replace(value).is_some(),
                "hold" => hold.replace(value).is_some(),
                "window" => window.replace(value).is_some(),
                "load_source" => source.replace(value.to_string()).is_some(),
                _ => {
                    return Err(format!(
                        "unknown parameter \"{param}\", the parameters are class=, load=, top=, hold=, window= and load_source="
                    ))
                }
            };
            if slot_taken {
                return Err(format!("parameter \"{key}=\" is duplicate"));
            }
        }
        let missing = |key: &str| format!("parameter \"{key}=\" is missing");
        let class = class.ok_or_else(|| missing("class"))?;
        crate::class::check_name(&class)?;
        let load_text = load.ok_or_else(|| missing("load"))?;
        let load = parse_load(load_text).filter(|l| *l > 0).ok_or_else(|| {
            format!("invalid value \"load={load_text}\", load= is a load average above 0 (\"4\", \"2.5\")")
        })?;
        let top_text = top.ok_or_else(|| missing("top"))?;
        let top = top_text.parse::<u32>().ok().filter(|n| (1..=MAX_TOP).contains(n)).ok_or_else(|| {
            format!("invalid value \"top={top_text}\", top= is a number of hosts from 1 to {MAX_TOP}")
        })?;
        let hold_text = hold.ok_or_else(|| missing("hold"))?;
        let hold_secs = parse_seconds(hold_text).filter(|s| (1..=86_400).contains(s)).ok_or_else(|| {
            format!("invalid value \"hold={hold_text}\", hold= is a time from 1s to 24h (\"30s\", \"5m\")")
        })?;
        let window_secs = match window {
            None => 60,
            Some(text) => parse_seconds(text)
                .filter(|s| (BUCKETS as u64..=3600).contains(s) && s % BUCKETS as u64 == 0)
                .ok_or_else(|| {
                    format!("invalid value \"window={text}\", window= is a multiple of {BUCKETS}s up to 1h (\"60s\")")
                })?,
        };
        if source.as_deref().is_some_and(|s| s.is_empty() || s.chars().any(char::is_control)) {
            return Err(String::from("invalid value \"load_source=\", it is a file path in /proc/loadavg format"));
        }
        Ok(ConfineSpec { class, load, top, hold_secs, window_secs, load_source: source })
    }

    pub fn bucket_secs(&self) -> u64 {
        self.window_secs / BUCKETS as u64
    }
}

/// A host's CPU time over the last window, in buckets stamped with the
/// bucket number (`seconds / bucket_secs`) they count. Plain data, so it
/// can live in a shared zone.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageWindow {
    stamps: [u64; BUCKETS],
    cpu_ms: [u64; BUCKETS],
}

impl UsageWindow {
    /// Adds `ms` at time `now` (seconds).
    pub fn add(&mut self, now: u64, bucket_secs: u64, ms: u64) {
        let bucket = now / bucket_secs.max(1);
        let i = (bucket % BUCKETS as u64) as usize;
        if self.stamps[i] != bucket {
            self.stamps[i] = bucket;
            self.cpu_ms[i] = 0;
        }
        self.cpu_ms[i] = self.cpu_ms[i].saturating_add(ms);
    }

    /// The sum over the window ending at `now`.
    pub fn total(&self, now: u64, bucket_secs: u64) -> u64 {
        let bucket = now / bucket_secs.max(1);
        let oldest = bucket.saturating_sub(BUCKETS as u64 - 1);
        (0..BUCKETS)
            .filter(|&i| (oldest..=bucket).contains(&self.stamps[i]))
            .map(|i| self.cpu_ms[i])
            .fold(0u64, u64::saturating_add)
    }
}

/// The state of the decision shared by every worker.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfineState {
    /// When the load was first seen at or below the threshold since it was
    /// last above it (seconds; 0: the load is above, or never was).
    pub below_since: u64,
}

/// One host as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUsage {
    pub host: String,
    /// CPU ms over the window.
    pub usage_ms: u64,
    pub confined: bool,
}

/// What changed, for the log and the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Confine { host: String, usage_ms: u64, rank: u32, load: u64 },
    Release { host: String, usage_ms: u64, load: u64 },
}

impl Decision {
    /// The log line (without the module's prefix).
    pub fn describe(&self, spec: &ConfineSpec) -> String {
        match self {
            Decision::Confine { host, usage_ms, rank, load } => format!(
                "confining host \"{host}\" to class \"{}\": {usage_ms} ms CPU in the last {}s, rank {rank} of top {}, load {} above {}",
                spec.class,
                spec.window_secs,
                spec.top,
                format_load(*load),
                format_load(spec.load)
            ),
            Decision::Release { host, usage_ms, load } => format!(
                "releasing host \"{host}\" from class \"{}\": load {} at or below {} for {}s ({usage_ms} ms CPU in the last {}s)",
                spec.class,
                format_load(*load),
                format_load(spec.load),
                spec.hold_secs,
                spec.window_secs
            ),
        }
    }
}

/// The hosts with some usage, heaviest first (ties by name, so every
/// worker ranks alike), with their rank from 1.
pub fn ranking(hosts: &[HostUsage]) -> Vec<(u32, &HostUsage)> {
    let mut ranked: Vec<&HostUsage> = hosts.iter().filter(|h| h.usage_ms > 0).collect();
    ranked.sort_by(|a, b| b.usage_ms.cmp(&a.usage_ms).then_with(|| a.host.cmp(&b.host)));
    ranked.into_iter().enumerate().map(|(i, h)| (i as u32 + 1, h)).collect()
}

/// One step of the decision at time `now` (seconds) with load `load`
/// (hundredths). Updates `state`; returns the hosts to confine or release.
pub fn decide(spec: &ConfineSpec, state: &mut ConfineState, now: u64, load: u64, hosts: &[HostUsage]) -> Vec<Decision> {
    if load > spec.load {
        state.below_since = 0;
        return ranking(hosts)
            .into_iter()
            .take(spec.top as usize)
            .filter(|(_, h)| !h.confined)
            .map(|(rank, h)| Decision::Confine { host: h.host.clone(), usage_ms: h.usage_ms, rank, load })
            .collect();
    }
    if state.below_since == 0 {
        state.below_since = now.max(1);
    }
    if now.saturating_sub(state.below_since) < spec.hold_secs {
        return Vec::new();
    }
    hosts
        .iter()
        .filter(|h| h.confined)
        .map(|h| Decision::Release { host: h.host.clone(), usage_ms: h.usage_ms, load })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConfineSpec {
        ConfineSpec::parse(&["class=slow", "load=4", "top=1", "hold=30s", "window=10s"]).expect("valid")
    }

    fn host(name: &str, usage_ms: u64, confined: bool) -> HostUsage {
        HostUsage { host: name.to_string(), usage_ms, confined }
    }

    #[test]
    fn accepted_forms() {
        let s =
            ConfineSpec::parse(&["class=slow", "load=2.5", "top=3", "hold=5m", "load_source=/tmp/load"]).expect("ok");
        assert_eq!((s.load, s.top, s.hold_secs, s.window_secs), (250, 3, 300, 60));
        assert_eq!(s.load_source.as_deref(), Some("/tmp/load"));
        assert_eq!(s.bucket_secs(), 6);
        assert_eq!(spec().bucket_secs(), 1);
    }

    #[test]
    fn refused_forms() {
        let base = ["class=slow", "load=4", "top=1", "hold=30"];
        let cases: &[(&[&str], &str)] = &[
            (&base[1..], "\"class=\" is missing"),
            (&["class=slow", "top=1", "hold=30"], "\"load=\" is missing"),
            (&["class=slow", "load=4", "hold=30"], "\"top=\" is missing"),
            (&["class=slow", "load=4", "top=1"], "\"hold=\" is missing"),
            (&["class=a/b", "load=4", "top=1", "hold=30"], "invalid class name"),
            (&["class=slow", "load=0", "top=1", "hold=30"], "invalid value \"load=0\""),
            (&["class=slow", "load=high", "top=1", "hold=30"], "invalid value \"load=high\""),
            (&["class=slow", "load=4", "top=0", "hold=30"], "invalid value \"top=0\""),
            (&["class=slow", "load=4", "top=1001", "hold=30"], "invalid value \"top=1001\""),
            (&["class=slow", "load=4", "top=1", "hold=0"], "invalid value \"hold=0\""),
            (&["class=slow", "load=4", "top=1", "hold=2d"], "invalid value \"hold=2d\""),
            (&["class=slow", "load=4", "top=1", "hold=3", "window=15"], "invalid value \"window=15\""),
            (&["class=slow", "load=4", "top=1", "hold=3", "load_source="], "invalid value \"load_source=\""),
            (&["class=slow", "load=4", "top=1", "hold=3", "top=2"], "\"top=\" is duplicate"),
            (&["class=slow", "load=4", "top=1", "hold=3", "cpu=5"], "unknown parameter \"cpu=5\""),
            (&["class=slow", "load"], "invalid parameter \"load\""),
        ];
        for (args, expected) in cases {
            let error = ConfineSpec::parse(args).expect_err(&format!("{args:?} is refused"));
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn window_slides() {
        let mut w = UsageWindow::default();
        w.add(100, 1, 30);
        w.add(100, 1, 20);
        w.add(105, 1, 7);
        assert_eq!(w.total(105, 1), 57);
        assert_eq!(w.total(109, 1), 57, "second 100 is still in a 10s window at 109");
        assert_eq!(w.total(110, 1), 7, "second 100 left the window");
        w.add(110, 1, 1); // reuses second 100's bucket
        assert_eq!(w.total(110, 1), 8);
        assert_eq!(w.total(200, 1), 0);
        w.add(0, 1, 5);
        assert_eq!(w.total(0, 1), 5, "bucket 0 counts at time 0");
        let mut big = UsageWindow::default();
        big.add(1, 1, u64::MAX);
        big.add(2, 1, 5);
        assert_eq!(big.total(2, 1), u64::MAX, "saturates");
    }

    #[test]
    fn confines_the_top_host_while_above_and_releases_after_hold() {
        let s = spec();
        let mut state = ConfineState::default();
        let hosts = [host("a.test", 10, false), host("burn.test", 900, false), host("c.test", 0, false)];
        // below: nothing
        assert!(decide(&s, &mut state, 1000, 300, &hosts).is_empty());
        // at the threshold is not above
        assert!(decide(&s, &mut state, 1001, 400, &hosts).is_empty());
        let d = decide(&s, &mut state, 1002, 520, &hosts);
        assert_eq!(d, [Decision::Confine { host: "burn.test".into(), usage_ms: 900, rank: 1, load: 520 }]);
        assert!(d[0].describe(&s).contains("confining host \"burn.test\" to class \"slow\": 900 ms CPU in the last 10s, rank 1 of top 1, load 5.20 above 4.00"));
        let hosts = [host("a.test", 10, false), host("burn.test", 900, true), host("c.test", 0, false)];
        assert!(decide(&s, &mut state, 1003, 520, &hosts).is_empty(), "already confined");
        // load falls: held for 30s, then released
        assert!(decide(&s, &mut state, 1010, 100, &hosts).is_empty());
        assert!(decide(&s, &mut state, 1039, 100, &hosts).is_empty());
        // back above resets the hold
        assert!(decide(&s, &mut state, 1039, 500, &hosts).is_empty());
        assert!(decide(&s, &mut state, 1040, 100, &hosts).is_empty());
        assert!(decide(&s, &mut state, 1069, 100, &hosts).is_empty());
        let d = decide(&s, &mut state, 1070, 100, &hosts);
        assert_eq!(d, [Decision::Release { host: "burn.test".into(), usage_ms: 900, load: 100 }]);
        assert!(d[0]
            .describe(&s)
            .starts_with("releasing host \"burn.test\" from class \"slow\": load 1.00 at or below 4.00 for 30s"));
    }

    #[test]
    fn ranking_is_stable_and_skips_idle_hosts() {
        let hosts = [host("b", 5, false), host("a", 5, false), host("idle", 0, false), host("z", 7, false)];
        let order: Vec<(u32, &str)> = ranking(&hosts).into_iter().map(|(r, h)| (r, h.host.as_str())).collect();
        assert_eq!(order, [(1, "z"), (2, "a"), (3, "b")]);
        let s = ConfineSpec { top: 5, ..spec() };
        let d = decide(&s, &mut ConfineState::default(), 10, 999, &hosts);
        assert_eq!(d.len(), 3, "top=5 with three busy hosts confines three, never an idle one");
    }
}
