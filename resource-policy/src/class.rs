//! `resource_class <name> [cpu=<percent>] [memory=<size>] [io_read=<rate>]
//! [io_write=<rate>] [pids=<n>];`: a named set of cgroup limits.

use crate::units::{parse_ms, parse_rate, parse_size};

/// Longest class name (it becomes a cgroup directory name).
pub const MAX_NAME: usize = 32;
/// Highest `cpu=`: percent of one CPU, so 100 CPUs.
pub const MAX_CPU_PERCENT: u32 = 10_000;
/// Lowest `memory=`: below this the kernel kills the runner before it starts.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Highest `pids=` (the kernel's own `pid_max` limit).
pub const MAX_PIDS: u64 = 4_194_304;
/// The CFS period a `cpu=` quota is computed for when `cpu_period=` is not
/// given: 10 ms, not the kernel's 100 ms, under which a request needing less
/// than the quota (50 ms at `cpu=50`) is never throttled. Not shorter: with
/// 2 ms a throttled group waits for a CPU at every period's end and gets
/// well under its cap once other programs keep the CPUs busy (34-40% of a
/// core at `cpu=50`, against 49.6-49.9% with 10 ms; `bench/resources.sh`
/// and README). Raised for small percentages so the quota stays at least
/// [`MIN_CPU_QUOTA_US`].
pub const DEFAULT_CPU_PERIOD_US: u64 = 10_000;
/// The kernel's smallest CFS quota and period (it refuses less): 1 ms.
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// The kernel's largest CFS period: 1 s.
pub const MAX_CPU_PERIOD_US: u64 = 1_000_000;

/// A cgroup controller a class needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Cpu,
    Memory,
    Io,
    Pids,
}

impl Controller {
    /// Its hierarchy's name under cgroup v1.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Io => "blkio",
            Controller::Pids => "pids",
        }
    }

    /// Its name in `cgroup.controllers` under cgroup v2.
    pub fn v2_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Io => "io",
            Controller::Pids => "pids",
        }
    }
}

/// One `resource_class`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassSpec {
    pub name: String,
    /// Percent of one CPU (`cpu=50`: half a core; `cpu=200`: two cores).
    pub cpu_percent: Option<u32>,
    /// `cpu_period=`, in microseconds (whole milliseconds); `None`: the
    /// default ([`ClassSpec::cpu_period_us`]).
    pub cpu_period_us: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Bytes per second read from, or written to, each block device.
    pub io_read_bps: Option<u64>,
    pub io_write_bps: Option<u64>,
    pub pids: Option<u64>,
}

/// Checks a class name: `[A-Za-z][A-Za-z0-9_-]*`, 1 to 32 bytes, not
/// `off` (which `resource_class_for off` uses for "no class"). The first
/// letter keeps class groups apart from the owners' groups, which are
/// named by uid (`<generation>/<uid>`), and from generation directories
/// (`<pid>.<n>`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name != "off";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid class name \"{name}\", it must be 1 to {MAX_NAME} letters, digits, \"_\" or \"-\" starting with a letter, and not \"off\""
        ))
    }
}

/// The shortest whole-millisecond period whose quota at `percent` is at
/// least [`MIN_CPU_QUOTA_US`] (at most [`MAX_CPU_PERIOD_US`]).
fn min_period_us(percent: u32) -> u64 {
    let us = (MIN_CPU_QUOTA_US * 100).div_ceil(percent as u64);
    (us.div_ceil(1000) * 1000).min(MAX_CPU_PERIOD_US)
}

/// `cpu_period=`: whole milliseconds (`2ms`) or seconds (`1s`), in microseconds.
fn parse_period_us(text: &str) -> Option<u64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return parse_ms(ms)?.checked_mul(1000);
    }
    parse_ms(text.strip_suffix('s')?)?.checked_mul(1_000_000)
}

fn invalid(param: &str, what: &str) -> String {
    format!("invalid value \"{param}\", {what}")
}

impl ClassSpec {
    /// Parses the arguments after the directive name: the class name, then
    /// `key=value` limits (at least one, each at most once).
    pub fn parse(args: &[&str]) -> Result<ClassSpec, String> {
        let (name, params) = args.split_first().ok_or("a class name is needed")?;
        check_name(name)?;
        let mut spec = ClassSpec { name: name.to_string(), ..ClassSpec::default() };
        for param in params {
            let (key, value) = param.split_once('=').ok_or_else(|| format!("invalid parameter \"{param}\""))?;
            let duplicate = match key {
                "cpu" => spec.cpu_percent.is_some(),
                "cpu_period" => spec.cpu_period_us.is_some(),
                "memory" => spec.memory_bytes.is_some(),
                "io_read" => spec.io_read_bps.is_some(),
                "io_write" => spec.io_write_bps.is_some(),
                "pids" => spec.pids.is_some(),
                _ => {
                    return Err(format!(
                        "unknown parameter \"{param}\", the limits are cpu= (with cpu_period=), memory=, io_read=, io_write= and pids="
                    ))
                }
            };
            if duplicate {
                return Err(format!("parameter \"{key}=\" is duplicate"));
            }
            match key {
                "cpu" => {
                    let percent = value.parse::<u32>().ok().filter(|p| (1..=MAX_CPU_PERCENT).contains(p));
                    let what = format!("cpu= is a percent of one CPU from 1 to {MAX_CPU_PERCENT}");
                    spec.cpu_percent = Some(percent.ok_or_else(|| invalid(param, &what))?);
                }
                "cpu_period" => {
                    let us = parse_period_us(value).filter(|p| (MIN_CPU_QUOTA_US..=MAX_CPU_PERIOD_US).contains(p));
                    let what =
                        "cpu_period= is a time from 1ms to 1s in whole milliseconds (\"2ms\", \"100ms\", \"1s\")";
                    spec.cpu_period_us = Some(us.ok_or_else(|| invalid(param, what))?);
                }
                "memory" => {
                    let bytes = parse_size(value).filter(|b| (MIN_MEMORY..=1 << 50).contains(b));
                    let what = "memory= is a size from 1m to 1048576g (\"512m\", \"2g\")";
                    spec.memory_bytes = Some(bytes.ok_or_else(|| invalid(param, what))?);
                }
                "io_read" | "io_write" => {
                    let rate = parse_rate(value).filter(|r| (1..=1 << 50).contains(r));
                    let what =
                        format!("{key}= is bytes per second per device, from 1 to 1048576g (\"10m\", \"10m/s\")");
                    let slot = if key == "io_read" { &mut spec.io_read_bps } else { &mut spec.io_write_bps };
                    *slot = Some(rate.ok_or_else(|| invalid(param, &what))?);
                }
                _ => {
                    let n = value.parse::<u64>().ok().filter(|n| (1..=MAX_PIDS).contains(n));
                    let what = format!("pids= is a number of processes from 1 to {MAX_PIDS}");
                    spec.pids = Some(n.ok_or_else(|| invalid(param, &what))?);
                }
            }
        }
        if let Some(period) = spec.cpu_period_us {
            let percent = spec.cpu_percent.ok_or("cpu_period= needs cpu=")?;
            if period * percent as u64 / 100 < MIN_CPU_QUOTA_US {
                return Err(format!(
                    "cpu_period={}ms with cpu={percent} gives a quota under the kernel's 1 ms, use cpu_period={}ms or more",
                    period / 1000,
                    min_period_us(percent) / 1000
                ));
            }
        }
        if spec.controllers().is_empty() {
            return Err(format!("class \"{}\" sets no limit (cpu=, memory=, io_read=, io_write= or pids=)", spec.name));
        }
        Ok(spec)
    }

    /// The controllers its limits need, each once.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut list = Vec::new();
        if self.cpu_percent.is_some() {
            list.push(Controller::Cpu);
        }
        if self.memory_bytes.is_some() {
            list.push(Controller::Memory);
        }
        if self.io_read_bps.is_some() || self.io_write_bps.is_some() {
            list.push(Controller::Io);
        }
        if self.pids.is_some() {
            list.push(Controller::Pids);
        }
        list
    }

    /// The CFS period of `cpu=`, in microseconds: `cpu_period=`, else
    /// [`DEFAULT_CPU_PERIOD_US`] raised to the shortest period whose quota
    /// the kernel accepts (`cpu=10`: 10 ms, `cpu=1`: 100 ms).
    pub fn cpu_period_us(&self) -> u64 {
        match (self.cpu_period_us, self.cpu_percent) {
            (Some(period), _) => period,
            (None, Some(percent)) => DEFAULT_CPU_PERIOD_US.max(min_period_us(percent)),
            (None, None) => DEFAULT_CPU_PERIOD_US,
        }
    }

    /// `cpu=` as a CFS quota for [`ClassSpec::cpu_period_us`].
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpu_percent.map(|p| self.cpu_period_us() * p as u64 / 100)
    }

    /// The limits as text for logs and `resource_stats`: `cpu=50 memory=268435456`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.cpu_percent {
            parts.push(format!("cpu={p}"));
        }
        if let Some(us) = self.cpu_period_us {
            parts.push(format!("cpu_period={}ms", us / 1000));
        }
        for (key, value) in [
            ("memory", self.memory_bytes),
            ("io_read", self.io_read_bps),
            ("io_write", self.io_write_bps),
            ("pids", self.pids),
        ] {
            if let Some(v) = value {
                parts.push(format!("{key}={v}"));
            }
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let spec = ClassSpec::parse(&["heavy", "cpu=50", "memory=256m", "io_read=10m/s", "io_write=1m", "pids=64"])
            .expect("valid");
        assert_eq!(spec.cpu_percent, Some(50));
        assert_eq!(spec.memory_bytes, Some(256 << 20));
        assert_eq!(spec.io_read_bps, Some(10 << 20));
        assert_eq!(spec.io_write_bps, Some(1 << 20));
        assert_eq!(spec.pids, Some(64));
        assert_eq!(spec.cpu_period_us(), 10_000);
        assert_eq!(spec.cpu_quota_us(), Some(5_000));
        assert_eq!(spec.controllers(), [Controller::Cpu, Controller::Memory, Controller::Io, Controller::Pids]);
        assert_eq!(spec.describe(), "cpu=50 memory=268435456 io_read=10485760 io_write=1048576 pids=64");
        for name in ["a", "x2003", "Heavy_1-b", &"z".repeat(32)] {
            assert!(ClassSpec::parse(&[name, "cpu=10"]).is_ok(), "{name}");
        }
        let two_cores = ClassSpec::parse(&["big", "cpu=200"]).expect("valid");
        assert_eq!(two_cores.cpu_quota_us(), Some(20_000));
        assert_eq!(two_cores.controllers(), [Controller::Cpu]);
    }

    #[test]
    fn refused_forms() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "a class name is needed"),
            (&["heavy"], "sets no limit"),
            (&["off", "cpu=5"], "invalid class name \"off\""),
            (&["a/b", "cpu=5"], "invalid class name"),
            (&["..", "cpu=5"], "invalid class name"),
            (&[&"x".repeat(33), "cpu=5"], "invalid class name"),
            // a uid's name: it would be an owner's group (`<generation>/2003`)
            (&["2003", "cpu=10"], "invalid class name \"2003\", it must be 1 to 32 letters, digits, \"_\" or \"-\" starting with a letter"),
            (&["1x", "cpu=10"], "invalid class name \"1x\""),
            (&["_x", "cpu=10"], "invalid class name \"_x\""),
            (&["-x", "cpu=10"], "invalid class name \"-x\""),
            (&["", "cpu=10"], "invalid class name \"\""),
            (&["h", "cpu=0"], "invalid value \"cpu=0\""),
            (&["h", "cpu=10001"], "invalid value \"cpu=10001\""),
            (&["h", "cpu=50%"], "invalid value \"cpu=50%\""),
            (&["h", "memory=12"], "invalid value \"memory=12\""),
            (&["h", "memory=lots"], "invalid value \"memory=lots\""),
            (&["h", "io_read=0"], "invalid value \"io_read=0\""),
            (&["h", "io_write=fast"], "invalid value \"io_write=fast\""),
            (&["h", "pids=0"], "invalid value \"pids=0\""),
            (&["h", "pids=99999999"], "invalid value \"pids=99999999\""),
            (&["h", "swap=1m"], "unknown parameter \"swap=1m\""),
            (&["h", "cpu"], "invalid parameter \"cpu\""),
            (&["h", "cpu=5", "cpu=6"], "parameter \"cpu=\" is duplicate"),
            (&["h", "cpu_period=10ms"], "cpu_period= needs cpu="),
            (&["h", "cpu=50", "cpu_period=500us"], "invalid value \"cpu_period=500us\""),
            (&["h", "cpu=50", "cpu_period=2"], "invalid value \"cpu_period=2\""),
            (&["h", "cpu=50", "cpu_period=2s"], "invalid value \"cpu_period=2s\""),
            (&["h", "cpu=50", "cpu_period=0ms"], "invalid value \"cpu_period=0ms\""),
            (
                &["h", "cpu=50", "cpu_period=1ms"],
                "cpu_period=1ms with cpu=50 gives a quota under the kernel's 1 ms, use cpu_period=2ms or more",
            ),
            (&["h", "cpu=10", "cpu_period=2ms", "cpu_period=3ms"], "parameter \"cpu_period=\" is duplicate"),
        ];
        for (args, expected) in cases {
            let error = ClassSpec::parse(args).expect_err(&format!("{args:?} is refused"));
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn cpu_period() {
        // default 10 ms, raised so the quota is at least the kernel's 1 ms
        let period = |args: &[&str]| ClassSpec::parse(args).map(|s| (s.cpu_period_us(), s.cpu_quota_us().unwrap()));
        assert_eq!(period(&["h", "cpu=50"]), Ok((10_000, 5_000)));
        assert_eq!(period(&["h", "cpu=100"]), Ok((10_000, 10_000)));
        assert_eq!(period(&["h", "cpu=25"]), Ok((10_000, 2_500)));
        assert_eq!(period(&["h", "cpu=10"]), Ok((10_000, 1_000)));
        assert_eq!(period(&["h", "cpu=5"]), Ok((20_000, 1_000)));
        assert_eq!(period(&["h", "cpu=50", "cpu_period=2ms"]), Ok((2_000, 1_000)));
        assert_eq!(period(&["h", "cpu=1"]), Ok((100_000, 1_000)));
        assert_eq!(period(&["h", "cpu=50", "cpu_period=100ms"]), Ok((100_000, 50_000)));
        assert_eq!(period(&["h", "cpu=50", "cpu_period=1s"]), Ok((1_000_000, 500_000)));
        assert_eq!(period(&["h", "cpu=200", "cpu_period=1ms"]), Ok((1_000, 2_000)));
        // what describe() writes parses back the same (the supervisor gets it so)
        let spec = ClassSpec::parse(&["h", "cpu=50", "cpu_period=100ms", "pids=3"]).expect("valid");
        assert_eq!(spec.describe(), "cpu=50 cpu_period=100ms pids=3");
        let described = spec.describe();
        let args: Vec<&str> = std::iter::once("h").chain(described.split(' ')).collect();
        assert_eq!(ClassSpec::parse(&args), Ok(spec));
        assert_eq!(ClassSpec::parse(&["h", "cpu=50"]).expect("valid").describe(), "cpu=50");
    }

    #[test]
    fn controller_names() {
        assert_eq!(Controller::Io.v1_name(), "blkio");
        assert_eq!(Controller::Io.v2_name(), "io");
        assert_eq!(Controller::Cpu.v1_name(), Controller::Cpu.v2_name());
    }
}
