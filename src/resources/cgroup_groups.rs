//! The groups the `Cgroup` Ruby API (mruby-cgroup compatible, for
//! `mruby_init`/`mruby_init_worker`) works on: one level below
//! `resource_cgroup_root`, never anywhere else. Where the root is in each
//! hierarchy comes from the supervisor program's layout report (asked once
//! per process), as for `nginx -t`.

use std::path::PathBuf;
use std::sync::Mutex;

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use resource_policy::cgroup_files::{check_group_name, LayoutReport, Setting, Version};

use super::HttpResourcesModule;

/// The layout report per root, asked once per process. The master fills
/// it when it checks `resource_cgroup_root` at each configuration load
/// ([`remember`]), so workers inherit it: a worker cannot ask itself (the
/// supervisor program's check wants a caller that may create groups).
static REPORTS: Mutex<Vec<(String, LayoutReport)>> = Mutex::new(Vec::new());

/// Keeps the report `nginx -t`'s check got for `root` (replacing an older one).
pub(super) fn remember(root: &str, report: &LayoutReport) {
    if let Ok(mut reports) = REPORTS.lock() {
        reports.retain(|(r, _)| r != root);
        reports.push((root.to_string(), report.clone()));
    }
}

/// The report remembered for `root`, if the check got one.
pub(super) fn remembered(root: &str) -> Option<LayoutReport> {
    let reports = REPORTS.lock().ok()?;
    reports.iter().find(|(r, _)| r == root).map(|(_, report)| report.clone())
}

fn report_for(cycle: &ngx_cycle_t, root: &str) -> Result<(LayoutReport, String), String> {
    let mut reports = REPORTS.lock().map_err(|_| String::from("cgroup layout cache poisoned"))?;
    if let Some((_, report)) = reports.iter().find(|(r, _)| r == root) {
        return Ok((report.clone(), root.to_string()));
    }
    let report = super::hierarchy::ask_supervisor(&crate::shared_conf::supervisor_program_of(cycle), root)?;
    reports.push((root.to_string(), report.clone()));
    Ok((report, root.to_string()))
}

/// `resource_cgroup_root` of `cycle`'s configuration, if set.
pub fn root_of(cycle: &ngx_cycle_t) -> Option<&str> {
    HttpResourcesModule::main_conf(cycle)?.cgroup_root.as_deref()
}

/// A group of the API: its name and version, and its directory in the
/// hierarchy of `kind` (`cpu`, `cpuacct`, `memory`, `blkio`; v2: the one).
pub struct Group {
    pub version: Version,
    pub root_dir: PathBuf,
    pub dir: PathBuf,
}

/// Resolves `name` in the hierarchy of `kind` for the configuration of `cycle`.
pub fn group(cycle: &ngx_cycle_t, kind: &str, name: &str) -> Result<Group, String> {
    check_group_name(name)?;
    let main =
        HttpResourcesModule::main_conf(cycle).ok_or("the Cgroup API needs \"resource_cgroup_root\" in http{}")?;
    let root = main.cgroup_root.as_deref().ok_or("the Cgroup API needs \"resource_cgroup_root\" in http{}")?;
    let (report, _) = report_for(cycle, root)?;
    let root_dir = match report.version {
        Version::V2 => PathBuf::from(&report.dirs[0]),
        Version::V1 => report
            .hierarchies
            .iter()
            .find(|(controllers, _)| controllers.iter().any(|c| c == kind))
            .map(|(_, dir)| PathBuf::from(dir))
            .ok_or_else(|| format!("this machine has no cgroup v1 \"{kind}\" hierarchy"))?,
    };
    Ok(Group { version: report.version, dir: root_dir.join(name), root_dir })
}

fn make_dir(dir: &std::path::Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
}

impl Group {
    pub fn exists(&self) -> bool {
        self.dir.join("cgroup.procs").is_file()
    }

    /// Creates the root (when missing) and the group.
    pub fn create(&self) -> Result<(), String> {
        make_dir(&self.root_dir)?;
        make_dir(&self.dir)
    }

    /// Removes the group (it must hold no process).
    pub fn delete(&self) -> Result<(), String> {
        std::fs::remove_dir(&self.dir).map_err(|e| format!("cannot delete the cgroup {}: {e}", self.dir.display()))
    }

    /// Writes a setting into the existing group.
    pub fn write(&self, setting: Setting) -> Result<(), String> {
        setting.check()?;
        if !self.exists() {
            return Err(format!("the cgroup {} does not exist (call create first)", self.dir.display()));
        }
        let period = match self.version {
            Version::V2 => {
                self.read("cpu.max").ok().and_then(|t| t.split_whitespace().nth(1)?.parse().ok()).unwrap_or(100_000)
            }
            Version::V1 => 0,
        };
        let (file, text) = setting.file_and_text(self.version, period);
        let path = self.dir.join(file);
        std::fs::write(&path, &text).map_err(|e| format!("cannot write \"{text}\" to {}: {e}", path.display()))
    }

    /// Reads one of the group's files.
    pub fn read(&self, file: &str) -> Result<String, String> {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}
