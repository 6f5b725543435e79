//! `nginx -t` checks against the machine's cgroup hierarchy: the
//! `resource_cgroup_root` can hold groups here (its parent exists and is
//! writable, it is a group if it exists), and every controller a class
//! needs is there. The detection itself is the supervisor program's (the
//! code that creates `tenant_cgroup` groups): this asks it, the program
//! `tenant_supervisor` names (the shared conf), as `tenant_cgroup` does,
//! and never detects a second way.

use std::path::Path;

use resource_policy::cgroup_files::{
    cpu_pressure_file, missing_controllers, parse_layout_report, reports_overlap, LayoutReport, Version,
};
use resource_policy::confine::Signal;

use super::conf::MainConf;

/// Runs `<supervisor> check-cgroup <root>`.
pub(super) fn ask_supervisor(supervisor: &Path, root: &str) -> Result<LayoutReport, String> {
    let output = crate::ngx_util::run_check_cgroup(supervisor, root)
        .map_err(|e| format!("cannot run \"{}\" to check the cgroup hierarchy: {e}", supervisor.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        return Err(if text.is_empty() { format!("\"{} check-cgroup\" failed", supervisor.display()) } else { text });
    }
    parse_layout_report(&text)
        .ok_or_else(|| format!("unexpected answer of \"{} check-cgroup\": {text}", supervisor.display()))
}

/// The controllers usable under the root: v1, the mounted hierarchies;
/// v2, what the root's parent group offers (`cgroup.controllers`).
fn available_controllers(report: &LayoutReport) -> Vec<String> {
    match report.version {
        Version::V1 => report.controllers.clone(),
        Version::V2 => {
            let parent = Path::new(&report.dirs[0]).parent().unwrap_or(Path::new("/"));
            std::fs::read_to_string(parent.join("cgroup.controllers"))
                .map(|text| text.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        }
    }
}

/// Every problem, one message each (empty: fine); `supervisor`: the
/// program to ask; `tenant_cgroup`: that directive's path, which must be
/// apart from the root (the same path, or one inside the other, would put
/// owners' groups among the class groups).
pub fn check(main: &MainConf, supervisor: &Path, tenant_cgroup: Option<&str>) -> Vec<String> {
    let Some(root) = &main.cgroup_root else {
        return Vec::new();
    };
    let overlap = |path: &str| {
        format!(
            "resource_cgroup_root \"{root}\" and tenant_cgroup \"{path}\" are the same cgroup sub-tree or one is \
             inside the other: owners' groups and class groups would collide, give them separate paths"
        )
    };
    if let Some(path) = tenant_cgroup.filter(|path| cgroupfs::paths_nested(root, path)) {
        return vec![overlap(path)];
    }
    let report = match ask_supervisor(supervisor, root) {
        Ok(report) => {
            super::cgroup_groups::remember(root, &report);
            report
        }
        Err(message) => return vec![format!("resource_cgroup_root \"{root}\": {message}")],
    };
    // one relative, one absolute: whether they meet depends on nginx's own
    // group here (same kinds were compared by name above)
    if let Some(path) = tenant_cgroup.filter(|path| path.starts_with('/') != root.starts_with('/')) {
        // a path the supervisor refuses is reported by tenant_cgroup's own check
        if let Ok(tenants) = ask_supervisor(supervisor, path) {
            if reports_overlap(&report, &tenants) {
                return vec![overlap(path)];
            }
        }
    }
    let available = available_controllers(&report);
    missing_controllers(report.version, &available, &main.classes)
}

/// The PSI file `resource_auto_confine pressure=` reads when no
/// `pressure_source=` is given (`cpu_pressure_file`: the class root's
/// `cpu.pressure` under cgroup v2, else `/proc/pressure/cpu`). `Ok(None)`:
/// nothing to choose; `Err`: the kernel offers no PSI file (built without
/// it, or booted with `psi=0`).
pub fn pressure_file(main: &MainConf) -> Result<Option<String>, String> {
    let Some(spec) = main.auto_confine.as_ref().filter(|s| s.signal == Signal::Pressure && s.source.is_none()) else {
        return Ok(None);
    };
    let report = main.cgroup_root.as_deref().and_then(super::cgroup_groups::remembered);
    let root_exists = report.as_ref().and_then(|r| r.dirs.first()).is_some_and(|d| Path::new(d).is_dir());
    let (file, stand_in) = cpu_pressure_file(report.as_ref(), root_exists);
    if !Path::new(&stand_in).is_file() {
        return Err(format!(
            "resource_auto_confine: pressure={} needs CPU pressure (PSI), but \"{stand_in}\" does not exist (a kernel without PSI, or booted with psi=0); use load= instead",
            spec.signal.format(spec.threshold)
        ));
    }
    Ok(Some(file))
}
