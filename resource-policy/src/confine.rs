//! Automatic confinement (thesis §7): `resource_auto_confine class=<name>
//! load=<threshold> | pressure=<percent> top=<n> hold=<seconds>
//! [window=<seconds>] [load_source=<file> | pressure_source=<file>];`. Each
//! host's CPU time is summed over a sliding window; while the load (the
//! 1-minute load average, or the CPU pressure: PSI `some avg10`) is above
//! the threshold the top-n hosts by that
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

/// What "the load" is: the signal the threshold is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `load=`: the 1-minute load average (`/proc/loadavg`).
    Load,
    /// `pressure=`: CPU pressure, the `some avg10` percentage of a PSI file
    /// (`cpu.pressure` of the class root under cgroup v2, else `/proc/pressure/cpu`).
    Pressure,
}

impl Signal {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Load => "load",
            Signal::Pressure => "cpu pressure",
        }
    }

    /// Its parameter, and the key `resource_stats` shows it under.
    pub fn key(self) -> &'static str {
        match self {
            Signal::Load => "load",
            Signal::Pressure => "pressure",
        }
    }

    /// The format its source file is in, for messages.
    pub fn file_format(self) -> &'static str {
        match self {
            Signal::Load => "/proc/loadavg",
            Signal::Pressure => "PSI (/proc/pressure/cpu)",
        }
    }

    /// A reading or threshold (hundredths) for messages: `3.50`, `38.34%`.
    pub fn format(self, hundredths: u64) -> String {
        match self {
            Signal::Load => format_load(hundredths),
            Signal::Pressure => format!("{}%", format_load(hundredths)),
        }
    }

    /// The reading in a source file's text, in hundredths: the first field
    /// of `/proc/loadavg`; the `avg10=` of the `some` line of a PSI file.
    pub fn parse_reading(self, text: &str) -> Option<u64> {
        match self {
            Signal::Load => text.split_ascii_whitespace().next().and_then(parse_load),
            Signal::Pressure => text
                .lines()
                .find_map(|line| line.strip_prefix("some "))?
                .split_ascii_whitespace()
                .find_map(|field| field.strip_prefix("avg10="))
                .and_then(parse_load)
                .filter(|p| *p <= 10_000),
        }
    }
}

/// One `resource_auto_confine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfineSpec {
    pub class: String,
    pub signal: Signal,
    /// The threshold in hundredths (of a load average, or of a percent of CPU pressure).
    pub threshold: u64,
    pub top: u32,
    pub hold_secs: u64,
    /// The window the usage is summed over (a multiple of [`BUCKETS`] seconds).
    pub window_secs: u64,
    /// `load_source=` (a file in `/proc/loadavg` format) or
    /// `pressure_source=` (a file in PSI format): tests, or a figure computed
    /// elsewhere. `None`: `/proc/loadavg`; for pressure the module fills it
    /// in at `nginx -t` from the cgroup layout.
    pub source: Option<String>,
}

impl ConfineSpec {
    pub fn parse(params: &[&str]) -> Result<ConfineSpec, String> {
        let (mut class, mut load, mut pressure, mut top, mut hold, mut window) = (None, None, None, None, None, None);
        let (mut load_source, mut pressure_source) = (None, None);
        for param in params {
            let (key, value) = param.split_once('=').ok_or_else(|| format!("invalid parameter \"{param}\""))?;
            let slot_taken = match key {
                "class" => class.replace(value.to_string()).is_some(),
                "load" => load.replace(value).is_some(),
                "pressure" => pressure.replace(value).is_some(),
                "top" => top.replace(value).is_some(),
                "hold" => hold.replace(value).is_some(),
                "window" => window.replace(value).is_some(),
                "load_source" => load_source.replace(value.to_string()).is_some(),
                "pressure_source" => pressure_source.replace(value.to_string()).is_some(),
                _ => {
                    return Err(format!(
                        "unknown parameter \"{param}\", the parameters are class=, load= or pressure=, top=, hold=, window= and load_source= or pressure_source="
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
        let (signal, threshold, source) = match (load, pressure) {
            (Some(text), None) => {
                let load = parse_load(text).filter(|l| *l > 0).ok_or_else(|| {
                    format!("invalid value \"load={text}\", load= is a load average above 0 (\"4\", \"2.5\")")
                })?;
                if pressure_source.is_some() {
                    return Err(String::from("\"pressure_source=\" goes with \"pressure=\", not \"load=\""));
                }
                (Signal::Load, load, load_source)
            }
            (None, Some(text)) => {
                let percent = parse_load(text).filter(|p| *p <= 10_000).ok_or_else(|| {
                    format!(
                        "invalid value \"pressure={text}\", pressure= is a percent from 0 to 100 with at most two decimals (\"20\", \"12.5\")"
                    )
                })?;
                if load_source.is_some() {
                    return Err(String::from("\"load_source=\" goes with \"load=\", not \"pressure=\""));
                }
                (Signal::Pressure, percent, pressure_source)
            }
            (Some(_), Some(_)) => {
                return Err(String::from("\"load=\" and \"pressure=\" exclude each other, give one of them"))
            }
            (None, None) => return Err(String::from("parameter \"load=\" or \"pressure=\" is missing")),
        };
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
            return Err(format!(
                "invalid value \"{}_source=\", it is a file path in {} format",
                signal.key(),
                signal.file_format()
            ));
        }
        Ok(ConfineSpec { class, signal, threshold, top, hold_secs, window_secs, source })
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
    /// `load`: the signal's reading (hundredths) when decided.
    Confine {
        host: String,
        usage_ms: u64,
        rank: u32,
        load: u64,
    },
    Release {
        host: String,
        usage_ms: u64,
        load: u64,
    },
}

impl Decision {
    /// The log line (without the module's prefix).
    pub fn describe(&self, spec: &ConfineSpec) -> String {
        match self {
            Decision::Confine { host, usage_ms, rank, load } => format!(
                "confining host \"{host}\" to class \"{}\": {usage_ms} ms CPU in the last {}s, rank {rank} of top {}, {} {} above {}",
                spec.class,
                spec.window_secs,
                spec.top,
                spec.signal.name(),
                spec.signal.format(*load),
                spec.signal.format(spec.threshold)
            ),
            Decision::Release { host, usage_ms, load } => format!(
                "releasing host \"{host}\" from class \"{}\": {} {} at or below {} for {}s ({usage_ms} ms CPU in the last {}s)",
                spec.class,
                spec.signal.name(),
                spec.signal.format(*load),
                spec.signal.format(spec.threshold),
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
/// (the signal's reading, hundredths). Updates `state`; returns the hosts to confine or release.
pub fn decide(spec: &ConfineSpec, state: &mut ConfineState, now: u64, load: u64, hosts: &[HostUsage]) -> Vec<Decision> {
    if load > spec.threshold {
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
        assert_eq!((s.signal, s.threshold, s.top, s.hold_secs, s.window_secs), (Signal::Load, 250, 3, 300, 60));
        assert_eq!(s.source.as_deref(), Some("/tmp/load"));
        let p = ConfineSpec::parse(&["class=slow", "pressure=12.5", "top=1", "hold=5", "pressure_source=/tmp/psi"])
            .expect("ok");
        assert_eq!((p.signal, p.threshold, p.source.as_deref()), (Signal::Pressure, 1250, Some("/tmp/psi")));
        for (text, hundredths) in [("0", 0), ("100", 10_000), ("99.99", 9999), ("0.5", 50)] {
            let p = ConfineSpec::parse(&["class=s", &format!("pressure={text}"), "top=1", "hold=5"]).expect(text);
            assert_eq!((p.threshold, p.source), (hundredths, None), "{text}");
        }
        assert_eq!(s.bucket_secs(), 6);
        assert_eq!(spec().bucket_secs(), 1);
    }

    #[test]
    fn refused_forms() {
        let base = ["class=slow", "load=4", "top=1", "hold=30"];
        let cases: &[(&[&str], &str)] = &[
            (&base[1..], "\"class=\" is missing"),
            (&["class=slow", "top=1", "hold=30"], "\"load=\" or \"pressure=\" is missing"),
            (&["class=slow", "load=4", "pressure=5", "top=1", "hold=30"], "exclude each other"),
            (&["class=slow", "pressure=100.01", "top=1", "hold=30"], "invalid value \"pressure=100.01\""),
            (&["class=slow", "pressure=12.345", "top=1", "hold=30"], "invalid value \"pressure=12.345\""),
            (&["class=slow", "pressure=-1", "top=1", "hold=30"], "from 0 to 100"),
            (&["class=slow", "pressure=high", "top=1", "hold=30"], "invalid value \"pressure=high\""),
            (&["class=slow", "pressure=5", "pressure=6", "top=1", "hold=30"], "\"pressure=\" is duplicate"),
            (&["class=slow", "pressure=5", "top=1", "hold=3", "load_source=/x"], "\"load_source=\" goes with"),
            (&["class=slow", "load=5", "top=1", "hold=3", "pressure_source=/x"], "\"pressure_source=\" goes with"),
            (&["class=slow", "pressure=5", "top=1", "hold=3", "pressure_source="], "in PSI"),
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
    fn readings() {
        assert_eq!(Signal::Load.parse_reading("3.50 2.00 1.00 1/100 4242\n"), Some(350));
        assert_eq!(Signal::Load.parse_reading("garbage\n"), None);
        assert_eq!(Signal::Load.parse_reading(""), None);
        let psi = "some avg10=38.34 avg60=30.73 avg300=35.89 total=13834561493\n\
                   full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(Signal::Pressure.parse_reading(psi), Some(3834));
        // older kernels have no `full` line for cpu; the order of fields is not relied on
        assert_eq!(Signal::Pressure.parse_reading("some avg60=1.00 avg10=0.00 avg300=0.00 total=0\n"), Some(0));
        assert_eq!(Signal::Pressure.parse_reading("some avg10=100.00 avg60=0 avg300=0 total=0"), Some(10_000));
        for bad in [
            "",
            "garbage",
            "full avg10=5.00 avg60=0.00 avg300=0.00 total=0\n",
            "some avg60=5.00 avg300=0.00 total=0\n",
            "some avg10=x avg60=0.00\n",
            "some avg10=100.01 avg60=0.00\n",
            "some avg10=-1.00\n",
            "3.50 2.00 1.00 1/100 4242\n",
        ] {
            assert_eq!(Signal::Pressure.parse_reading(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pressure_lines_say_which_signal() {
        let s = ConfineSpec::parse(&["class=slow", "pressure=20", "top=1", "hold=3s", "window=10s"]).expect("ok");
        let mut state = ConfineState::default();
        let hosts = [host("burn.test", 900, false)];
        assert!(decide(&s, &mut state, 100, 2000, &hosts).is_empty(), "at the threshold is not above");
        let d = decide(&s, &mut state, 101, 3834, &hosts);
        assert_eq!(d, [Decision::Confine { host: "burn.test".into(), usage_ms: 900, rank: 1, load: 3834 }]);
        assert!(
            d[0].describe(&s).ends_with("rank 1 of top 1, cpu pressure 38.34% above 20.00%"),
            "{}",
            d[0].describe(&s)
        );
        let hosts = [host("burn.test", 900, true)];
        assert!(decide(&s, &mut state, 102, 150, &hosts).is_empty());
        let d = decide(&s, &mut state, 105, 150, &hosts);
        assert!(d[0].describe(&s).starts_with(
            "releasing host \"burn.test\" from class \"slow\": cpu pressure 1.50% at or below 20.00% for 3s"
        ));
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
