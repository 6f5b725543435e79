//! Resource classes (`resource_cgroup_root`, `resource_class`,
//! `tenant_resource_class`; issue 10): their cgroups and limits.
//!
//! The keeper creates the sub-tree at start, with the layout code of
//! `cgroup.rs` (no second detection), and removes it at stop:
//!
//! ```text
//! <hierarchy mount><base><resource_cgroup_root>/    0755 root
//!   <generation>/
//!     <class>/                 one per resource_class, with its limits
//!     tenants.<class>/         tenant_resource_class: no limit of its own
//!       <uid>/                 each owner's group, with the class's limits
//! ```
//!
//! Owners are capped separately: their groups hang under `tenants.<class>`,
//! which has no limit, not under `<class>` (whose limit all would share).
//! (`.` cannot appear in a class name, so `tenants.<class>` never clashes
//! with one.) Every directory and file is root's and not writable by
//! others ([`cgroupfs::make_group`] checks), so a runner cannot move
//! itself or change a limit.
//!
//! Limits: `cpu=` is a CFS quota per `cpu_period=` (default 10 ms; see
//! `resource_policy::class::DEFAULT_CPU_PERIOD_US`) (v1 `cpu.cfs_period_us`
//! and `cpu.cfs_quota_us`, v2 `cpu.max`), `memory=` is `memory.limit_in_bytes`
//! (v1) or `memory.max` (v2), `pids=` is `pids.max`, `io_read=`/`io_write=`
//! are one line per whole disk of the machine (`block_devices.rs`) in v1
//! `blkio.throttle.read_bps_device`/`write_bps_device` or v2 `io.max`.

use std::path::PathBuf;

use resource_policy::class::ClassSpec;

use cgroupfs::{make_group, Layout, Tree, Version};

use crate::block_devices::BlockDevice;

/// One limit file to write: the controller whose hierarchy has it (v1),
/// the file, its value. In write order (the CFS period before the quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

/// The limit files of `spec` under cgroup `version`; the I/O rates for
/// each of `disks`.
pub fn limits(spec: &ClassSpec, version: Version, disks: &[BlockDevice]) -> Vec<Limit> {
    let mut list = Vec::new();
    let mut add = |controller, file, value: String| list.push(Limit { controller, file, value });
    if let Some(quota) = spec.cpu_quota_us() {
        let period = spec.cpu_period_us();
        match version {
            Version::V1 => {
                add("cpu", "cpu.cfs_period_us", period.to_string());
                add("cpu", "cpu.cfs_quota_us", quota.to_string());
            }
            Version::V2 => add("cpu", "cpu.max", format!("{quota} {period}")),
        }
    }
    if let Some(bytes) = spec.memory_bytes {
        let file = if version == Version::V1 { "memory.limit_in_bytes" } else { "memory.max" };
        add("memory", file, bytes.to_string());
    }
    if let Some(n) = spec.pids {
        add("pids", "pids.max", n.to_string());
    }
    for disk in disks {
        let number = &disk.number;
        match version {
            Version::V1 => {
                if let Some(bps) = spec.io_read_bps {
                    add("blkio", "blkio.throttle.read_bps_device", format!("{number} {bps}"));
                }
                if let Some(bps) = spec.io_write_bps {
                    add("blkio", "blkio.throttle.write_bps_device", format!("{number} {bps}"));
                }
            }
            Version::V2 => {
                let rates: Vec<String> = [("rbps", spec.io_read_bps), ("wbps", spec.io_write_bps)]
                    .iter()
                    .filter_map(|(key, bps)| bps.map(|bps| format!("{key}={bps}")))
                    .collect();
                if !rates.is_empty() {
                    add("io", "io.max", format!("{number} {}", rates.join(" ")));
                }
            }
        }
    }
    list
}

/// Writes `spec`'s limits into a group, given as its directory in each
/// hierarchy of `layout` (in the same order); I/O rates for `disks`.
pub fn apply(layout: &Layout, dirs: &[PathBuf], spec: &ClassSpec, disks: &[BlockDevice]) -> Result<(), String> {
    for limit in limits(spec, layout.version, disks) {
        for (h, dir) in layout.hierarchies.iter().zip(dirs) {
            let here = layout.version == Version::V2 || h.controllers.split(',').any(|c| c == limit.controller);
            if here {
                let path = dir.join(limit.file);
                std::fs::write(&path, &limit.value).map_err(|e| {
                    format!("class \"{}\": cannot write {} to {}: {e}", spec.name, limit.value, path.display())
                })?;
            }
        }
    }
    Ok(())
}

/// v2: lets a group's children use the controllers (best effort: what the
/// parent does not offer is left out, and the limit write says so).
fn delegate_v2(dir: &std::path::Path) {
    for controller in ["+cpu", "+memory", "+pids", "+io"] {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), controller);
    }
}

/// This generation's class groups.
#[derive(Debug, Clone)]
pub struct Classes {
    /// `<root>/<generation>`, whose entries are the class groups.
    tree: Tree,
    /// `<root>/<generation>/tenants.<class>` and the class, with `tenant_resource_class`.
    owners: Option<(Tree, ClassSpec)>,
    /// The disks `io_read=`/`io_write=` apply to (read once, at start).
    disks: Vec<BlockDevice>,
}

impl Classes {
    /// Creates the root, the generation's group and one group per class
    /// with its limits. On failure what was made is removed again.
    pub fn create(
        layout: Layout,
        root: &str,
        generation: &str,
        specs: &[ClassSpec],
        tenant_class: Option<&str>,
    ) -> Result<Classes, String> {
        let tree = Tree::new(layout.clone(), root, generation);
        tree.create()?;
        let disks = crate::block_devices::whole_disks(std::path::Path::new("/sys/block"));
        let mut classes = Classes { tree, owners: None, disks };
        if let Err(e) = classes.create_groups(specs, tenant_class, root, generation) {
            classes.remove_all();
            return Err(e);
        }
        Ok(classes)
    }

    fn create_groups(
        &mut self,
        specs: &[ClassSpec],
        tenant_class: Option<&str>,
        root: &str,
        generation: &str,
    ) -> Result<(), String> {
        let layout = self.tree.layout.clone();
        if layout.version == Version::V2 {
            for h in &layout.hierarchies {
                delegate_v2(&self.tree.root_dir(h));
                delegate_v2(&self.tree.generation_dir(h));
            }
        }
        for spec in specs {
            let dirs = self.class_dirs(&spec.name);
            for dir in &dirs {
                make_group(dir)?;
            }
            apply(&layout, &dirs, spec, &self.disks)?;
        }
        if let Some(name) = tenant_class {
            let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| format!("unknown class \"{name}\""))?;
            let owners = Tree::new(layout.clone(), &format!("{root}/{generation}"), &format!("tenants.{name}"));
            owners.create()?;
            if layout.version == Version::V2 {
                for h in &layout.hierarchies {
                    delegate_v2(&owners.generation_dir(h));
                }
            }
            self.owners = Some((owners, spec.clone()));
        }
        Ok(())
    }

    /// With `tenant_resource_class`: writes the class's limits into an
    /// owner's new group (its directory in each hierarchy).
    pub fn apply_owner_limits(&self, dirs: &[PathBuf]) -> Result<(), String> {
        match &self.owners {
            Some((owners, class)) => apply(&owners.layout, dirs, class, &self.disks),
            None => Ok(()),
        }
    }

    /// The disks the I/O rates apply to.
    pub fn disks(&self) -> &[BlockDevice] {
        &self.disks
    }

    /// The group of class `name`, one directory per hierarchy.
    pub fn class_dirs(&self, name: &str) -> Vec<PathBuf> {
        self.tree.layout.hierarchies.iter().map(|h| self.tree.generation_dir(h).join(name)).collect()
    }

    /// The kernel's count of OOM kills in class `name`'s group (v1
    /// `memory.oom_control`, v2 `memory.events`: `oom_kill N`), or None
    /// where the kernel does not count them (no memory controller, or a
    /// kernel before 4.13).
    pub fn oom_kills(&self, name: &str) -> Option<u64> {
        oom_kills_in(&self.tree.layout, self.class_dirs(name))
    }

    /// With `tenant_resource_class`: the same count in owner `uid`'s group.
    pub fn owner_oom_kills(&self, uid: u32) -> Option<u64> {
        let (owners, _) = self.owners.as_ref()?;
        oom_kills_in(&owners.layout, owners.owner(uid).dirs)
    }

    /// A group of the `Cgroup` Ruby API, `<root>/<name>`, in the hierarchy
    /// of `controller` (v1; v2: the unified one). `None` when this machine
    /// has no such hierarchy. The name must have been checked
    /// (`resource_policy::cgroup_files::check_group_name`).
    pub fn api_group_dir(&self, controller: &str, name: &str) -> Option<PathBuf> {
        let layout = &self.tree.layout;
        let h = match layout.version {
            Version::V2 => layout.hierarchies.first()?,
            Version::V1 => layout.hierarchies.iter().find(|h| h.controllers.split(',').any(|c| c == controller))?,
        };
        Some(self.tree.root_dir(h).join(name))
    }

    /// The supervisor's own group in each hierarchy: where a runner that
    /// has no owner's group goes back to.
    pub fn own_dirs(&self) -> Vec<PathBuf> {
        let layout = &self.tree.layout;
        layout.hierarchies.iter().map(|h| h.mount.join(h.own.strip_prefix("/").unwrap_or(&h.own))).collect()
    }

    /// With `tenant_resource_class`: the tree of the owners' groups and the
    /// limits each gets.
    pub fn owners(&self) -> Option<&(Tree, ClassSpec)> {
        self.owners.as_ref()
    }

    /// A one-line description for the log.
    pub fn describe(&self) -> String {
        let dirs: Vec<String> =
            self.tree.layout.hierarchies.iter().map(|h| self.tree.generation_dir(h).display().to_string()).collect();
        dirs.join(" ")
    }

    /// At stop: the owners' groups, the class groups, the generation's
    /// group and the root (unless another generation still uses it). What
    /// is still in a group is killed first.
    pub fn remove_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some((owners, _)) = &self.owners {
            problems.extend(owners.remove_all());
        }
        problems.extend(self.tree.remove_all());
        problems
    }
}

/// The OOM kill count of a group given as its directory in each hierarchy.
fn oom_kills_in(layout: &Layout, dirs: Vec<PathBuf>) -> Option<u64> {
    let (_, dir) = layout
        .hierarchies
        .iter()
        .zip(dirs)
        .find(|(h, _)| layout.version == Version::V2 || h.controllers.split(',').any(|c| c == "memory"))?;
    let file = if layout.version == Version::V1 { "memory.oom_control" } else { "memory.events" };
    parse_oom_kill(&std::fs::read_to_string(dir.join(file)).ok()?)
}

/// The `oom_kill N` line of `memory.oom_control` (v1) or `memory.events` (v2).
fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> ClassSpec {
        ClassSpec::parse(args).expect("valid class")
    }

    #[test]
    fn limit_files_v1_and_v2() {
        let heavy = spec(&["heavy", "cpu=50", "memory=64m", "pids=32", "io_read=1m"]);
        let v1_limits = limits(&heavy, Version::V1, &[]);
        let v1: Vec<(&str, &str)> = v1_limits.iter().map(|l| (l.file, l.value.as_str())).collect();
        assert_eq!(
            v1,
            [
                ("cpu.cfs_period_us", "10000"),
                ("cpu.cfs_quota_us", "5000"),
                ("memory.limit_in_bytes", "67108864"),
                ("pids.max", "32")
            ]
        );
        let v2: Vec<String> =
            limits(&heavy, Version::V2, &[]).iter().map(|l| format!("{}={}", l.file, l.value)).collect();
        assert_eq!(v2, ["cpu.max=5000 10000", "memory.max=67108864", "pids.max=32"]);
        let slow = spec(&["slow", "cpu=50", "cpu_period=100ms"]);
        let v1: Vec<String> =
            limits(&slow, Version::V1, &[]).iter().map(|l| format!("{}={}", l.file, l.value)).collect();
        assert_eq!(v1, ["cpu.cfs_period_us=100000", "cpu.cfs_quota_us=50000"]);
        let disks = [
            BlockDevice { name: String::from("sda"), number: String::from("8:0") },
            BlockDevice { name: String::from("vda"), number: String::from("254:0") },
        ];
        let io = spec(&["io", "io_read=1m", "io_write=2m"]);
        let v1: Vec<String> = limits(&io, Version::V1, &disks)
            .iter()
            .map(|l| format!("{} {}={}", l.controller, l.file, l.value))
            .collect();
        assert_eq!(
            v1,
            [
                "blkio blkio.throttle.read_bps_device=8:0 1048576",
                "blkio blkio.throttle.write_bps_device=8:0 2097152",
                "blkio blkio.throttle.read_bps_device=254:0 1048576",
                "blkio blkio.throttle.write_bps_device=254:0 2097152"
            ]
        );
        let write_only = spec(&["io", "io_write=1m"]);
        let v2: Vec<String> =
            limits(&write_only, Version::V2, &disks).iter().map(|l| format!("{}={}", l.file, l.value)).collect();
        assert_eq!(v2, ["io.max=8:0 wbps=1048576", "io.max=254:0 wbps=1048576"]);
        assert!(limits(&io, Version::V1, &[]).is_empty(), "no disk, no I/O limit");
    }

    #[test]
    fn oom_kill_counts() {
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(parse_oom_kill("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"), Some(2));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None, "a kernel before 4.13");
    }

    /// The real hierarchy, as root: the class groups exist with their
    /// limits, an owner's group under `tenants.<class>` too, and all is
    /// gone after `remove_all`. Skipped when not root or not writable.
    #[test]
    fn real_hierarchy_classes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let Ok(layout) = Layout::detect() else {
            eprintln!("skipped: no cgroup hierarchy");
            return;
        };
        let root = format!("ngx-mruby-classes-{}", std::process::id());
        if let Err(e) = Tree::new(layout.clone(), &root, "gen").check() {
            eprintln!("skipped: {e}");
            return;
        }
        let specs = [spec(&["heavy", "cpu=50", "memory=64m", "pids=32"]), spec(&["small", "cpu=25"])];
        let classes = Classes::create(layout.clone(), &root, "gen", &specs, Some("small")).expect("create");
        for (h, dir) in layout.hierarchies.iter().zip(classes.class_dirs("heavy")) {
            assert!(dir.join("cgroup.procs").is_file(), "{}", dir.display());
            for limit in limits(&specs[0], layout.version, classes.disks()) {
                if h.controllers.split(',').any(|c| c == limit.controller) {
                    let got = std::fs::read_to_string(dir.join(limit.file)).expect("limit file");
                    assert_eq!(got.trim(), limit.value, "{}", limit.file);
                }
            }
        }
        let (owners, class) = classes.owners().expect("owners tree");
        let group = owners.create_owner(4244).expect("owner group");
        apply(&layout, &group.dirs, class, classes.disks()).expect("limits");
        assert!(group.dirs.iter().all(|d| d.to_string_lossy().contains("/gen/tenants.small/4244")));
        assert!(classes.remove_all().is_empty());
        for h in &layout.hierarchies {
            assert!(!Tree::new(layout.clone(), &root, "gen").root_dir(h).exists());
        }
    }
}
