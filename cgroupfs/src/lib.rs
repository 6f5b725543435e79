//! cgroupfs: cgroup v1/v2 detection and the sub-tree of groups the tenant
//! runners are placed in (`tenant_cgroup <path>;`).
//!
//! The configured path names a sub-tree this program owns: the keeper
//! creates it at start, one group per nginx generation below it, the
//! supervisor one group per owner below that, and each runner writes its
//! own pid into its owner's group before it gives up root. At stop the
//! keeper kills whatever is left in the groups and removes them, and the
//! path itself once no other generation uses it.
//!
//! ```text
//! <hierarchy mount><base><path>/            0755 root (base: nginx's own group for a
//!   <generation>/                           relative path, the hierarchy's root for an absolute one)
//!     <uid>/                                0755 root; cgroup.procs and limits 0644 root
//! ```
//!
//! Both cgroup versions: v1 with a hierarchy per controller (or a few
//! controllers co-mounted), the groups are made in each of the `cpu`,
//! `cpuacct`, `memory`, `pids` and `blkio` hierarchies that are mounted;
//! v2 with the one unified hierarchy. v1 wins when both are mounted (the
//! hybrid layout keeps every controller on v1, the unified tree has none).
//!
//! A runner cannot move itself or change its limits: every file here is
//! root's and not writable by others, and Landlock gives runners no access
//! to `/sys` at all. Issue 10 (resource classes, per-request moves,
//! accounting) builds on [`Tree`] and [`OwnerGroup`]. A crate of its own so
//! the supervisor (which creates and enters the groups) and the module
//! (which may check and read them) share one implementation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The v1 controllers whose hierarchies hold the runners.
pub const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "blkio"];

/// Longest configured path.
const MAX_PATH: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One mounted hierarchy the groups are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1: its controllers as `/proc/self/cgroup` names them (`cpu,cpuacct`); v2: empty.
    pub controllers: String,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// This process's own group in it, relative to the mount (`/` or `/a/b`).
    pub own: PathBuf,
}

/// Which cgroup version is in use and its hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub hierarchies: Vec<Hierarchy>,
}

/// `\040`-style escapes of `/proc/self/mountinfo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup mount: (root within the hierarchy, mount point, fstype, super options).
fn cgroup_mounts(mountinfo: &str) -> Vec<(String, PathBuf, String, Vec<String>)> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let rest: Vec<&str> = after.split(' ').collect();
        if fields.len() < 5 || rest.len() < 3 || !matches!(rest[0], "cgroup" | "cgroup2") {
            continue;
        }
        let options = rest[2].split(',').map(str::to_string).collect();
        mounts.push((unescape(fields[3]), PathBuf::from(unescape(fields[4])), rest[0].to_string(), options));
    }
    mounts
}

/// `own` made relative to a mount whose root in the hierarchy is `root`
/// (a container sees only its part of the tree).
fn own_in_mount(own: &str, root: &str) -> PathBuf {
    if root == "/" {
        return PathBuf::from(own);
    }
    match own.strip_prefix(root) {
        Some("") => PathBuf::from("/"),
        Some(rest) if rest.starts_with('/') => PathBuf::from(rest),
        _ => PathBuf::from(own),
    }
}

impl Layout {
    /// The layout this process sees.
    pub fn detect() -> Result<Layout, String> {
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        Layout::from_tables(&mountinfo, &cgroup)
    }

    /// The layout from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn from_tables(mountinfo: &str, cgroup: &str) -> Result<Layout, String> {
        let mounts = cgroup_mounts(mountinfo);
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(own)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if controllers.is_empty() {
                let mount = mounts.iter().find(|(_, _, fstype, _)| fstype == "cgroup2");
                if let Some((root, mount, _, _)) = mount {
                    v2 = Some(Hierarchy {
                        controllers: String::new(),
                        mount: mount.clone(),
                        own: own_in_mount(own, root),
                    });
                }
                continue;
            }
            let names: Vec<&str> = controllers.split(',').collect();
            if !names.iter().any(|n| V1_CONTROLLERS.contains(n)) {
                continue;
            }
            let mount = mounts.iter().find(|(_, _, fstype, options)| {
                fstype == "cgroup" && names.iter().all(|n| options.iter().any(|o| o == n))
            });
            if let Some((root, mount, _, _)) = mount {
                v1.push(Hierarchy {
                    controllers: controllers.to_string(),
                    mount: mount.clone(),
                    own: own_in_mount(own, root),
                });
            }
        }
        if !v1.is_empty() {
            v1.sort_by(|a, b| a.controllers.cmp(&b.controllers));
            return Ok(Layout { version: Version::V1, hierarchies: v1 });
        }
        match v2 {
            Some(h) => Ok(Layout { version: Version::V2, hierarchies: vec![h] }),
            None => Err(format!(
                "no cgroup hierarchy is mounted (looked for cgroup v1 {} and cgroup2 in /proc/self/mountinfo)",
                V1_CONTROLLERS.join(", ")
            )),
        }
    }

    /// One line for the log: `cgroup v1 (cpu at /sys/fs/cgroup/cpu, ...)`.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self
            .hierarchies
            .iter()
            .map(|h| {
                if h.controllers.is_empty() {
                    h.mount.display().to_string()
                } else {
                    format!("{} at {}", h.controllers, h.mount.display())
                }
            })
            .collect();
        let version = if self.version == Version::V1 { "v1" } else { "v2" };
        format!("cgroup {version} ({})", list.join(", "))
    }
}

/// Checks the syntax of a configured path: relative (to nginx's own group)
/// or absolute (from each hierarchy's root), names of `[A-Za-z0-9._-]`,
/// no `.` or `..`, not the root itself.
pub fn check_path_syntax(path: &str) -> Result<(), String> {
    let inner = path.strip_prefix('/').unwrap_or(path);
    let ok = !inner.is_empty()
        && path.len() <= MAX_PATH
        && inner.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid path \"{path}\": a cgroup path (relative to nginx's own group, or absolute from the \
             hierarchy's root) of names made of letters, digits, \".\", \"_\", \"-\", without \".\" or \"..\""
        ))
    }
}

/// Whether two configured paths of the same kind (both relative, or both
/// absolute) name the same group or one inside the other, by their names
/// alone (no machine needed; [`Tree::overlaps`] resolves mixed kinds).
pub fn paths_nested(a: &str, b: &str) -> bool {
    if a.starts_with('/') != b.starts_with('/') {
        return false;
    }
    let (a, b) = (Path::new(a), Path::new(b));
    a.starts_with(b) || b.starts_with(a)
}

/// The sub-tree of one nginx generation.
#[derive(Debug, Clone)]
pub struct Tree {
    pub layout: Layout,
    /// `tenant_cgroup` as configured.
    path: String,
    /// This generation's name (the generation directory's name).
    generation: String,
}

/// The groups of one owner, one per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerGroup {
    pub dirs: Vec<PathBuf>,
}

pub fn make_group(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
    // the kernel makes the directory 0755 and its files 0644 (some 0200),
    // owned by the creator: check, so no runner can ever write here
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(format!("{} is not a directory owned by root", dir.display()));
    }
    if meta.mode() & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The pids in a group (`cgroup.procs`).
pub fn group_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in `dir` until it is empty or `wait` has passed,
/// then removes it. Returns how many processes it killed, and whether the
/// group is gone.
fn empty_and_remove(dir: &Path, wait: Duration) -> (usize, Result<(), String>) {
    let deadline = Instant::now() + wait;
    let mut killed = std::collections::HashSet::new();
    loop {
        for pid in group_pids(dir) {
            if killed.insert(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let removed = match std::fs::remove_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if Instant::now() >= deadline => Err(format!("cannot remove the cgroup {}: {e}", dir.display())),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        return (killed.len(), removed);
    }
}

/// `<pid>.<n>`: how the module names a generation.
pub fn is_generation_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    name.split_once('.').is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Empties and removes `dir` and every group below it, deepest first.
fn remove_group_tree(dir: &Path) -> (usize, Vec<String>) {
    let mut killed = 0;
    let mut problems = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let (n, mut p) = remove_group_tree(&entry.path());
                killed += n;
                problems.append(&mut p);
            }
        }
    }
    let (n, removed) = empty_and_remove(dir, Duration::from_secs(2));
    if let Err(e) = removed {
        problems.push(e);
    }
    (killed + n, problems)
}

impl Tree {
    pub fn new(layout: Layout, path: &str, generation: &str) -> Tree {
        Tree { layout, path: path.to_string(), generation: generation.to_string() }
    }

    /// The configured path in hierarchy `h`.
    pub fn root_dir(&self, h: &Hierarchy) -> PathBuf {
        let base = if self.path.starts_with('/') { Path::new("/") } else { h.own.as_path() };
        let relative = base.join(&self.path);
        h.mount.join(relative.strip_prefix("/").unwrap_or(&relative))
    }

    /// This generation's group in hierarchy `h`.
    pub fn generation_dir(&self, h: &Hierarchy) -> PathBuf {
        self.root_dir(h).join(&self.generation)
    }

    /// The groups of owner `uid` (not created).
    pub fn owner(&self, uid: u32) -> OwnerGroup {
        OwnerGroup {
            dirs: self.layout.hierarchies.iter().map(|h| self.generation_dir(h).join(uid.to_string())).collect(),
        }
    }

    /// Checks what `nginx -t` can: in every hierarchy, the path's parent is
    /// an existing group this process may create groups in, and the path,
    /// if it exists, is a group.
    pub fn check(&self) -> Result<(), String> {
        for h in &self.layout.hierarchies {
            let root = self.root_dir(h);
            let parent = root.parent().unwrap_or(&h.mount);
            if !parent.is_dir() {
                return Err(format!(
                    "the parent group {} of \"{}\" does not exist (only the last name is created)",
                    parent.display(),
                    self.path
                ));
            }
            if nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK).is_err() {
                return Err(format!(
                    "cannot create groups in {} (not writable: read-only, or not root)",
                    parent.display()
                ));
            }
            if root.exists() && !root.join("cgroup.procs").is_file() {
                return Err(format!("{} exists and is not a cgroup", root.display()));
            }
        }
        Ok(())
    }

    /// Whether `other` (on the same layout) names the same sub-tree as
    /// this one, or one inside it or around it, in some hierarchy: then
    /// their groups would mix (an owner's `<generation>/<uid>` in one,
    /// a class group in the other).
    pub fn overlaps(&self, other: &Tree) -> bool {
        self.layout.hierarchies.iter().any(|h| {
            let (a, b) = (self.root_dir(h), other.root_dir(h));
            a.starts_with(&b) || b.starts_with(&a)
        })
    }

    /// The generation directories under the path (in any hierarchy) other
    /// than this tree's own: names of the form `<pid>.<n>`, the only
    /// names a generation gets (a `Cgroup` API group starts with a letter).
    pub fn other_generations(&self) -> Vec<String> {
        let mut names = Vec::new();
        for h in &self.layout.hierarchies {
            let Ok(entries) = std::fs::read_dir(self.root_dir(h)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_generation_name(&name)
                    && name != self.generation
                    && !names.contains(&name)
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                {
                    names.push(name);
                }
            }
        }
        names.sort();
        names
    }

    /// Removes generation `name` under the path in every hierarchy, its
    /// groups at any depth first, killing what is still in them. Returns
    /// the number of processes killed (counted once across hierarchies)
    /// and the problems (a group that would not go).
    pub fn remove_generation(&self, name: &str) -> (usize, Vec<String>) {
        let mut killed = 0;
        let mut problems = Vec::new();
        for h in &self.layout.hierarchies {
            let dir = self.root_dir(h).join(name);
            if dir.is_dir() {
                let (n, mut p) = remove_group_tree(&dir);
                killed = killed.max(n);
                problems.append(&mut p);
            }
        }
        (killed, problems)
    }

    /// Creates the path (when missing) and this generation's group.
    pub fn create(&self) -> Result<(), String> {
        self.check()?;
        for h in &self.layout.hierarchies {
            let generation = self.generation_dir(h);
            // another generation stopping may remove the path in between: try twice
            let made = make_group(&self.root_dir(h)).and_then(|()| make_group(&generation));
            made.or_else(|_| make_group(&self.root_dir(h)).and_then(|()| make_group(&generation)))?;
        }
        Ok(())
    }

    /// Creates the groups of owner `uid` (kept while it has runners).
    pub fn create_owner(&self, uid: u32) -> Result<OwnerGroup, String> {
        let group = self.owner(uid);
        for dir in &group.dirs {
            make_group(dir)?;
        }
        Ok(group)
    }

    /// The owner has no runner left: kills what is still in its groups
    /// (processes that left their runner's session) and removes them.
    /// Returns the number of processes killed; a group whose processes are
    /// still dying stays until the next time or until stop.
    pub fn remove_owner(&self, uid: u32) -> usize {
        // the same processes are in every hierarchy: count them once
        self.owner(uid).dirs.iter().map(|dir| empty_and_remove(dir, Duration::from_millis(50)).0).max().unwrap_or(0)
    }

    /// At stop: empties and removes every group of this generation, then
    /// the path itself unless another generation still has groups in it.
    pub fn remove_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for h in &self.layout.hierarchies {
            let generation = self.generation_dir(h);
            if let Ok(entries) = std::fs::read_dir(&generation) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        if let (_, Err(e)) = empty_and_remove(&entry.path(), Duration::from_secs(2)) {
                            problems.push(e);
                        }
                    }
                }
            }
            if let (_, Err(e)) = empty_and_remove(&generation, Duration::from_secs(1)) {
                problems.push(e);
            }
            // busy or not empty: another generation's groups are in it
            let _ = std::fs::remove_dir(self.root_dir(h));
        }
        problems
    }
}

impl OwnerGroup {
    /// Moves process `pid` (0: the caller) into every group of the owner.
    pub fn enter(&self, pid: i32) -> Result<(), String> {
        let pid = if pid == 0 { std::process::id() as i32 } else { pid };
        for dir in &self.dirs {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(|e| format!("cannot enter {}: {e}", procs.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
36 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 30 0:33 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
38 30 0:34 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP_V1: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
5:devices:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn detects_v1_in_the_hybrid_layout() {
        let layout = Layout::from_tables(MOUNTINFO_V1, CGROUP_V1).expect("layout");
        assert_eq!(layout.version, Version::V1);
        let names: Vec<&str> = layout.hierarchies.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(names, ["blkio", "cpu", "cpuacct", "memory", "pids"]);
        let memory = &layout.hierarchies[3];
        assert_eq!(memory.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(memory.own, PathBuf::from("/process_api/abc"));
    }

    #[test]
    fn detects_co_mounted_v1_controllers() {
        let mountinfo = "31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,nosuid,cpu,cpuacct\n";
        let layout = Layout::from_tables(mountinfo, "3:cpu,cpuacct:/x\n").expect("layout");
        assert_eq!(layout.hierarchies.len(), 1);
        assert_eq!(layout.hierarchies[0].mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(layout.hierarchies[0].own, PathBuf::from("/x"));
    }

    #[test]
    fn detects_v2_and_container_roots() {
        let mountinfo = "30 24 0:26 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = Layout::from_tables(mountinfo, "0::/ctr/nginx.service\n").expect("layout");
        assert_eq!(layout.version, Version::V2);
        assert_eq!(layout.hierarchies[0].own, PathBuf::from("/nginx.service"));
        assert!(Layout::from_tables("", "0::/\n").is_err());
        assert!(Layout::from_tables(MOUNTINFO_V1, "5:devices:/\n").is_err());
    }

    #[test]
    fn paths_relative_and_absolute() {
        let layout = Layout::from_tables(MOUNTINFO_V1, CGROUP_V1).expect("layout");
        let memory = layout.hierarchies[3].clone();
        let cpu = layout.hierarchies[1].clone();
        let relative = Tree::new(layout.clone(), "tenants", "77.1");
        assert_eq!(relative.root_dir(&memory), PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/tenants"));
        assert_eq!(relative.root_dir(&cpu), PathBuf::from("/sys/fs/cgroup/cpu/tenants"));
        assert_eq!(
            relative.owner(1001).dirs[3],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/tenants/77.1/1001")
        );
        let absolute = Tree::new(layout, "/web/tenants", "77.1");
        assert_eq!(absolute.root_dir(&memory), PathBuf::from("/sys/fs/cgroup/memory/web/tenants"));
    }

    #[test]
    fn overlapping_trees() {
        let layout = Layout::from_tables(MOUNTINFO_V1, CGROUP_V1).expect("layout");
        let tree = |path: &str| Tree::new(layout.clone(), path, "77.1");
        assert!(tree("R").overlaps(&tree("R")), "the same path");
        assert!(tree("R").overlaps(&tree("R/classes")), "one inside the other");
        assert!(tree("R/classes").overlaps(&tree("R")), "one around the other");
        assert!(tree("/R").overlaps(&tree("R")), "relative to a group at the hierarchy's root (cpu: /)");
        assert!(!tree("R").overlaps(&tree("R2")), "a longer name is not inside");
        assert!(!tree("tenants").overlaps(&tree("classes")));
        assert!(!tree("/a/R").overlaps(&tree("/b/R")));
    }

    #[test]
    fn nested_paths_by_name() {
        assert!(paths_nested("R", "R"));
        assert!(paths_nested("R/classes", "R"));
        assert!(paths_nested("/R", "/R/owners"));
        assert!(!paths_nested("R", "R2"));
        assert!(!paths_nested("/R", "R"), "mixed kinds need the machine");
        assert!(!paths_nested("a/R", "b/R"));
    }

    #[test]
    fn generation_names() {
        for good in ["1234.1", "1.22", "4194304.100"] {
            assert!(is_generation_name(good), "{good}");
        }
        for bad in ["", "1234", "1234.", ".1", "a.1", "1.b", "1.2.3", "tenants.heavy", "12345678901.1", "web.1"] {
            assert!(!is_generation_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn path_syntax() {
        for good in ["tenants", "/tenants", "a/b.c/d_e-1", "/a/b"] {
            assert!(check_path_syntax(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "a//b", "a/../b", "./a", "a/", "a b", "a\nb", "/sys/fs/cgroup/../x", &"a".repeat(201)] {
            assert!(check_path_syntax(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    /// The real hierarchy, as root: create a tree, put a child process in
    /// an owner's group, see it in /proc/<pid>/cgroup, remove everything
    /// (killing the process). Skipped when not root or nothing is writable.
    #[test]
    fn real_hierarchy_round_trip() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let Ok(layout) = Layout::detect() else {
            eprintln!("skipped: no cgroup hierarchy");
            return;
        };
        let name = format!("ngx-mruby-unit-{}", std::process::id());
        let tree = Tree::new(layout.clone(), &name, "gen");
        if let Err(e) = tree.check() {
            eprintln!("skipped: {e}");
            return;
        }
        tree.create().expect("create");
        let group = tree.create_owner(4242).expect("owner group");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        group.enter(child.id() as i32).expect("enter");
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).expect("cgroup");
        for h in &layout.hierarchies {
            let dir = tree.owner(4242).dirs.into_iter().find(|d| d.starts_with(&h.mount)).expect("dir");
            let suffix = dir.strip_prefix(&h.mount).expect("under mount");
            let line = format!("{}:/{}", h.controllers, suffix.display());
            assert!(cgroup.lines().any(|l| l.ends_with(&line)), "{line} in {cgroup}");
            let meta = std::fs::metadata(dir.join("cgroup.procs")).expect("procs");
            assert_eq!((meta.uid(), meta.mode() & 0o022), (0, 0), "cgroup.procs is root's, not writable by others");
        }
        assert_eq!(tree.remove_owner(4242), 1, "the leftover process is killed");
        let _ = child.wait();
        assert!(tree.remove_all().is_empty());
        for h in &layout.hierarchies {
            assert!(!tree.root_dir(h).exists(), "{} removed", tree.root_dir(h).display());
        }
    }

    /// The v2 code path on the real unified hierarchy of a hybrid machine
    /// (mounted at /sys/fs/cgroup/unified), when there is one.
    #[test]
    fn real_unified_hierarchy() {
        let unified = Path::new("/sys/fs/cgroup/unified");
        if !nix::unistd::geteuid().is_root() || !unified.join("cgroup.procs").is_file() {
            eprintln!("skipped: needs root and a hybrid layout");
            return;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
            .unwrap_or_else(|| String::from("/"));
        let hierarchy = Hierarchy { controllers: String::new(), mount: unified.to_path_buf(), own: PathBuf::from(own) };
        let layout = Layout { version: Version::V2, hierarchies: vec![hierarchy] };
        let tree = Tree::new(layout, &format!("ngx-mruby-unit2-{}", std::process::id()), "gen");
        tree.create().expect("create");
        let group = tree.create_owner(4243).expect("owner group");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        group.enter(child.id() as i32).expect("enter");
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).expect("cgroup");
        assert!(cgroup.lines().any(|l| l.starts_with("0::") && l.ends_with("/gen/4243")), "{cgroup}");
        assert!(tree.remove_all().is_empty());
        let _ = child.wait();
        assert!(!tree.owner(4243).dirs[0].exists());
    }
}
