//! What the `Cgroup` Ruby API (mruby-cgroup compatible) writes and reads,
//! for cgroup v1 and v2: the file and the text for each setting, checked
//! before anything is written (unlike mruby-cgroup, a bad value is an
//! error, never a silent no-op), and the group names it accepts (one path
//! component starting with a letter: no `/`, no `..`, never a generation
//! directory of the module). Where the files are (the hierarchy, the
//! module's `resource_cgroup_root`) is the shared cgroup layout's concern.

use crate::class::Controller;

/// Longest group name.
pub const MAX_GROUP_NAME: usize = 64;

/// The cgroup version the files are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A setting the Ruby API can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `Cgroup::CPU#cfs_quota_us=`: µs per period, -1 = no limit.
    CfsQuotaUs(i64),
    /// `Cgroup::CPU#cfs_period_us=`: 1 ms to 1 s.
    CfsPeriodUs(u64),
    /// `Cgroup::CPU#shares=`: 2 to 262144 (v2: mapped to `cpu.weight` 1-10000).
    Shares(u64),
    /// `Cgroup::MEMORY#limit_in_bytes=`: -1 = no limit.
    MemoryLimit(i64),
    /// `Cgroup::BLKIO#throttle_read_bps_device=` / `_write_`: device and bytes per second (0 = no limit).
    ReadBps {
        major: u32,
        minor: u32,
        bps: u64,
    },
    WriteBps {
        major: u32,
        minor: u32,
        bps: u64,
    },
}

/// Checks a group name: one level of `[A-Za-z0-9._-]`, 1 to 64 bytes,
/// starting with a letter. The groups sit next to the module's own
/// directories in `resource_cgroup_root` (one per nginx generation, named
/// `<master pid>.<n>`): a name starting with a letter can never be one of
/// those (nor `.` or `..`).
pub fn check_group_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_GROUP_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cgroup name {name:?}: 1 to {MAX_GROUP_NAME} letters, digits, \".\", \"_\" or \"-\", starting with a letter, one level (no \"/\")"
        ))
    }
}

/// Parses `"<major>:<minor> <bytes per second>"` (mruby-cgroup's form).
pub fn parse_device_rate(text: &str) -> Result<(u32, u32, u64), String> {
    let bad =
        || format!("invalid device rate {text:?}, it must look like \"8:0 1048576\" (major:minor bytes-per-second)");
    let (device, rate) = text.split_once(' ').ok_or_else(bad)?;
    let (major, minor) = device.split_once(':').ok_or_else(bad)?;
    fn number<T: core::str::FromStr>(s: &str) -> Option<T> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    }
    let major: u32 = number(major).ok_or_else(bad)?;
    let minor: u32 = number(minor).ok_or_else(bad)?;
    let bps: u64 = number(rate).ok_or_else(bad)?;
    Ok((major, minor, bps))
}

impl Setting {
    /// Checks the value's range.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Setting::CfsQuotaUs(q) if q == -1 || (1000..=1_000_000_000).contains(&q) => Ok(()),
            Setting::CfsQuotaUs(q) => Err(format!("cfs_quota_us must be -1 (no limit) or 1000 to 1000000000, not {q}")),
            Setting::CfsPeriodUs(p) if (1000..=1_000_000).contains(&p) => Ok(()),
            Setting::CfsPeriodUs(p) => Err(format!("cfs_period_us must be 1000 to 1000000, not {p}")),
            Setting::Shares(s) if (2..=262_144).contains(&s) => Ok(()),
            Setting::Shares(s) => Err(format!("shares must be 2 to 262144, not {s}")),
            Setting::MemoryLimit(m) if m == -1 || (1 << 20..=1 << 50).contains(&m) => Ok(()),
            Setting::MemoryLimit(m) => Err(format!("limit_in_bytes must be -1 (no limit) or 1 MiB to 1 PiB, not {m}")),
            Setting::ReadBps { bps, .. } | Setting::WriteBps { bps, .. } if bps <= 1 << 50 => Ok(()),
            Setting::ReadBps { bps, .. } | Setting::WriteBps { bps, .. } => {
                Err(format!("a device rate must be at most 1 PiB per second, not {bps}"))
            }
        }
    }

    /// The controller whose hierarchy (v1) or files (v2) it needs.
    pub fn controller(&self) -> Controller {
        match self {
            Setting::CfsQuotaUs(_) | Setting::CfsPeriodUs(_) | Setting::Shares(_) => Controller::Cpu,
            Setting::MemoryLimit(_) => Controller::Memory,
            Setting::ReadBps { .. } | Setting::WriteBps { .. } => Controller::Io,
        }
    }

    /// The file and the text to write. v2's `cpu.max` holds quota and
    /// period together: `period` is the group's current (or staged) period.
    pub fn file_and_text(&self, version: Version, period: u64) -> (&'static str, String) {
        match (version, *self) {
            (Version::V1, Setting::CfsQuotaUs(q)) => ("cpu.cfs_quota_us", q.to_string()),
            (Version::V1, Setting::CfsPeriodUs(p)) => ("cpu.cfs_period_us", p.to_string()),
            (Version::V1, Setting::Shares(s)) => ("cpu.shares", s.to_string()),
            (Version::V1, Setting::MemoryLimit(m)) => ("memory.limit_in_bytes", m.to_string()),
            (Version::V1, Setting::ReadBps { major, minor, bps }) => {
                ("blkio.throttle.read_bps_device", format!("{major}:{minor} {bps}"))
            }
            (Version::V1, Setting::WriteBps { major, minor, bps }) => {
                ("blkio.throttle.write_bps_device", format!("{major}:{minor} {bps}"))
            }
            (Version::V2, Setting::CfsQuotaUs(q)) => {
                ("cpu.max", format!("{} {period}", if q == -1 { String::from("max") } else { q.to_string() }))
            }
            (Version::V2, Setting::CfsPeriodUs(p)) => ("cpu.max", format!("max {p}")),
            // the kernel's own v1 -> v2 conversion (systemd's too)
            (Version::V2, Setting::Shares(s)) => ("cpu.weight", (1 + (s - 2) * 9999 / 262_142).to_string()),
            (Version::V2, Setting::MemoryLimit(m)) => {
                ("memory.max", if m == -1 { String::from("max") } else { m.to_string() })
            }
            (Version::V2, Setting::ReadBps { major, minor, bps }) => (
                "io.max",
                format!("{major}:{minor} rbps={}", if bps == 0 { String::from("max") } else { bps.to_string() }),
            ),
            (Version::V2, Setting::WriteBps { major, minor, bps }) => (
                "io.max",
                format!("{major}:{minor} wbps={}", if bps == 0 { String::from("max") } else { bps.to_string() }),
            ),
        }
    }
}

/// CPU time used by a group in nanoseconds (`Cgroup::CPUACCT#usage`), from
/// v1's `cpuacct.usage` or v2's `cpu.stat` (`usage_usec`).
pub fn parse_cpu_usage_ns(version: Version, text: &str) -> Option<u64> {
    match version {
        Version::V1 => text.trim().parse().ok(),
        Version::V2 => text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|us| us.saturating_mul(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for good in ["web", "a.b", "site_1-x", "Z9", &"a".repeat(64)] {
            assert!(check_group_name(good).is_ok(), "{good}");
        }
        // 1234.1 could be a generation's directory; names starting with a digit, dot, _ or - are refused
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\n", "ü", &"a".repeat(65), "1234.1", "1", ".x", "_x", "-x"]
        {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_rates() {
        assert_eq!(parse_device_rate("8:0 1048576"), Ok((8, 0, 1 << 20)));
        for bad in ["8:0", "8 100", ":0 1", "8:0 -1", "8:0 1 2", "8:0  1", "a:b 1", "8:0 99999999999999999999"] {
            assert!(parse_device_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        assert!(Setting::CfsQuotaUs(-1).check().is_ok());
        assert!(Setting::CfsQuotaUs(50_000).check().is_ok());
        for bad in [Setting::CfsQuotaUs(0), Setting::CfsQuotaUs(-2), Setting::CfsQuotaUs(i64::MAX)] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(Setting::CfsPeriodUs(999).check().is_err());
        assert!(Setting::Shares(1).check().is_err());
        assert!(Setting::Shares(1024).check().is_ok());
        assert!(Setting::MemoryLimit(1024).check().is_err());
        assert!(Setting::MemoryLimit(i64::MAX).check().is_err());
        assert!(Setting::MemoryLimit(64 << 20).check().is_ok());
        assert!(Setting::ReadBps { major: 8, minor: 0, bps: u64::MAX }.check().is_err());
    }

    #[test]
    fn files_v1_and_v2() {
        let q = Setting::CfsQuotaUs(50_000);
        assert_eq!(q.file_and_text(Version::V1, 100_000), ("cpu.cfs_quota_us", String::from("50000")));
        assert_eq!(q.file_and_text(Version::V2, 100_000), ("cpu.max", String::from("50000 100000")));
        assert_eq!(Setting::CfsQuotaUs(-1).file_and_text(Version::V2, 20_000).1, "max 20000");
        assert_eq!(Setting::Shares(1024).file_and_text(Version::V2, 0), ("cpu.weight", String::from("39")));
        assert_eq!(Setting::Shares(2).file_and_text(Version::V2, 0).1, "1");
        assert_eq!(Setting::Shares(262_144).file_and_text(Version::V2, 0).1, "10000");
        assert_eq!(Setting::MemoryLimit(-1).file_and_text(Version::V2, 0), ("memory.max", String::from("max")));
        let r = Setting::ReadBps { major: 8, minor: 0, bps: 1000 };
        assert_eq!(r.file_and_text(Version::V1, 0), ("blkio.throttle.read_bps_device", String::from("8:0 1000")));
        assert_eq!(r.file_and_text(Version::V2, 0), ("io.max", String::from("8:0 rbps=1000")));
        assert_eq!(r.controller(), Controller::Io);
    }

    #[test]
    fn cpu_usage() {
        assert_eq!(parse_cpu_usage_ns(Version::V1, "123456789\n"), Some(123_456_789));
        assert_eq!(parse_cpu_usage_ns(Version::V2, "usage_usec 1500\nuser_usec 1000\n"), Some(1_500_000));
        assert_eq!(parse_cpu_usage_ns(Version::V2, "nothing 1\n"), None);
    }
}

/// What `ngx-mruby-supervisor check-cgroup <path>` reports for a usable
/// path: `cgroup v1 (blkio at /sys/fs/cgroup/blkio, cpu,cpuacct at ...): <dir> <dir>...`
/// or `cgroup v2 (/sys/fs/cgroup): <dir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutReport {
    pub version: Version,
    /// v1: the controllers of the hierarchies (empty under v2).
    pub controllers: Vec<String>,
    /// The path's group in each hierarchy.
    pub dirs: Vec<String>,
    /// v1: each hierarchy's controllers with the path's group in it.
    pub hierarchies: Vec<(Vec<String>, String)>,
}

/// Parses the supervisor's report (`None`: not in that form).
pub fn parse_layout_report(text: &str) -> Option<LayoutReport> {
    let rest = text.trim().strip_prefix("cgroup ")?;
    let (version, rest) = rest.split_once(" (")?;
    let version = match version {
        "v1" => Version::V1,
        "v2" => Version::V2,
        _ => return None,
    };
    let (list, dirs) = rest.split_once("): ")?;
    let mut controllers = Vec::new();
    let mut grouped = Vec::new();
    if version == Version::V1 {
        for hierarchy in list.split(", ") {
            let (names, _mount) = hierarchy.split_once(" at ")?;
            let names: Vec<String> = names.split(',').map(str::to_string).collect();
            controllers.extend(names.iter().cloned());
            grouped.push(names);
        }
    }
    let dirs: Vec<String> = dirs.split(' ').filter(|d| !d.is_empty()).map(str::to_string).collect();
    if dirs.is_empty() || (version == Version::V1 && dirs.len() != grouped.len()) {
        return None;
    }
    let hierarchies = grouped.into_iter().zip(dirs.iter().cloned()).collect();
    Some(LayoutReport { version, controllers, dirs, hierarchies })
}

/// Whether two reported paths (`LayoutReport::dirs`, one directory per
/// hierarchy in the same order) name the same group, or one inside the
/// other, in some hierarchy: `tenant_cgroup` and `resource_cgroup_root`
/// must not (an owner's group `<generation>/<uid>` would meet the class
/// groups `<generation>/<class>`).
pub fn reports_overlap(a: &LayoutReport, b: &LayoutReport) -> bool {
    a.dirs.iter().zip(&b.dirs).any(|(a, b)| {
        let (a, b) = (std::path::Path::new(a), std::path::Path::new(b));
        a.starts_with(b) || b.starts_with(a)
    })
}

/// The system's CPU pressure file.
pub const SYSTEM_CPU_PRESSURE: &str = "/proc/pressure/cpu";

/// Where `resource_auto_confine pressure=` reads the CPU pressure without
/// `pressure_source=`: (the file, the file whose existence says the kernel
/// offers it now). Under v2 the class root's `cpu.pressure`; the root is
/// created at start, so before that its parent's file stands for it
/// (`root_exists`). Under v1 (or with no report), `/proc/pressure/cpu`.
pub fn cpu_pressure_file(report: Option<&LayoutReport>, root_exists: bool) -> (String, String) {
    match report.filter(|r| r.version == Version::V2).and_then(|r| r.dirs.first()) {
        Some(root) => {
            let root = root.trim_end_matches('/');
            let file = format!("{root}/cpu.pressure");
            let parent = root.rsplit_once('/').map_or("", |(parent, _)| parent);
            let stand_in = if root_exists { file.clone() } else { format!("{parent}/cpu.pressure") };
            (file, stand_in)
        }
        None => (SYSTEM_CPU_PRESSURE.to_string(), SYSTEM_CPU_PRESSURE.to_string()),
    }
}

/// One message per controller a class needs that `available` lacks.
pub fn missing_controllers(version: Version, available: &[String], classes: &[crate::class::ClassSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    for class in classes {
        for controller in class.controllers() {
            let name = match version {
                Version::V1 => controller.v1_name(),
                Version::V2 => controller.v2_name(),
            };
            if !available.iter().any(|a| a == name) {
                let version = if version == Version::V1 { "v1" } else { "v2" };
                problems.push(format!(
                    "resource_class \"{}\": its limits need the \"{name}\" controller, which this machine's cgroup {version} \
                     does not offer (it has: {})",
                    class.name,
                    if available.is_empty() { String::from("none") } else { available.join(", ") }
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod report_tests {
    use super::*;
    use crate::class::ClassSpec;

    #[test]
    fn missing_controllers_are_named() {
        let classes = [
            ClassSpec::parse(&["slow", "cpu=10", "io_read=1m"]).expect("ok"),
            ClassSpec::parse(&["small", "memory=64m", "pids=10"]).expect("ok"),
        ];
        let v1: Vec<String> = ["blkio", "cpu", "cpuacct", "memory", "pids"].map(String::from).to_vec();
        assert!(missing_controllers(Version::V1, &v1, &classes).is_empty());
        let no_io: Vec<String> = ["cpu", "memory", "pids"].map(String::from).to_vec();
        assert_eq!(
            missing_controllers(Version::V1, &no_io, &classes),
            ["resource_class \"slow\": its limits need the \"blkio\" controller, which this machine's cgroup v1 does not offer (it has: cpu, memory, pids)"]
        );
        let v2_bare: Vec<String> = Vec::new();
        let problems = missing_controllers(Version::V2, &v2_bare, &classes);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[1].contains("\"io\" controller") && problems[1].ends_with("(it has: none)"));
    }

    #[test]
    fn overlapping_paths() {
        let report =
            |dirs: &str| parse_layout_report(&format!("cgroup v1 (cpu at /c, memory at /m): {dirs}")).expect("ok");
        let root = report("/c/R /m/R");
        assert!(reports_overlap(&root, &report("/c/R /m/R")), "the same");
        assert!(reports_overlap(&root, &report("/c/R/x /m/R/x")), "inside");
        assert!(reports_overlap(&report("/c/R/x /m/R/x"), &root), "around");
        assert!(reports_overlap(&root, &report("/c/T /m/R")), "in one hierarchy is enough");
        assert!(!reports_overlap(&root, &report("/c/R2 /m/R2")), "a longer name is another group");
        assert!(!reports_overlap(&root, &report("/c/T /m/T")));
    }

    #[test]
    fn cpu_pressure_files() {
        let v2 = parse_layout_report("cgroup v2 (/sys/fs/cgroup): /sys/fs/cgroup/system.slice/classes").expect("v2");
        assert_eq!(
            cpu_pressure_file(Some(&v2), true),
            (
                "/sys/fs/cgroup/system.slice/classes/cpu.pressure".into(),
                "/sys/fs/cgroup/system.slice/classes/cpu.pressure".into()
            )
        );
        assert_eq!(
            cpu_pressure_file(Some(&v2), false),
            (
                "/sys/fs/cgroup/system.slice/classes/cpu.pressure".into(),
                "/sys/fs/cgroup/system.slice/cpu.pressure".into()
            )
        );
        let v1 = parse_layout_report("cgroup v1 (cpu at /c, memory at /m): /c/x /m/x").expect("v1");
        let system = (String::from("/proc/pressure/cpu"), String::from("/proc/pressure/cpu"));
        assert_eq!(cpu_pressure_file(Some(&v1), true), system);
        assert_eq!(cpu_pressure_file(None, false), system);
    }

    #[test]
    fn parses_both_versions() {
        let v1 = "cgroup v1 (blkio at /sys/fs/cgroup/blkio, cpu,cpuacct at /sys/fs/cgroup/cpu,cpuacct, memory at /m): /a /b /c\n";
        let report = parse_layout_report(v1).expect("v1");
        assert_eq!(report.version, Version::V1);
        assert_eq!(report.controllers, ["blkio", "cpu", "cpuacct", "memory"]);
        assert_eq!(report.dirs, ["/a", "/b", "/c"]);
        assert_eq!(report.hierarchies[1], (vec![String::from("cpu"), String::from("cpuacct")], String::from("/b")));
        let v2 = parse_layout_report("cgroup v2 (/sys/fs/cgroup): /sys/fs/cgroup/x").expect("v2");
        assert_eq!((v2.version, v2.controllers.len(), v2.dirs.len()), (Version::V2, 0, 1));
        for bad in [
            "",
            "the parent group /x does not exist",
            "cgroup v3 (x): /a",
            "cgroup v1 (cpu): /a",
            "cgroup v1 (cpu at /c): ",
        ] {
            assert!(parse_layout_report(bad).is_none(), "{bad:?}");
        }
    }
}
