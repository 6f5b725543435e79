//! Stale generations: cgroup sub-trees of an nginx whose keeper did not
//! stop normally (SIGKILL, OOM kill, a hard-killed nginx). Only the
//! keeper's `stop()` removes a generation's groups, so the keeper sweeps,
//! at start, the generations left under `resource_cgroup_root` and
//! `tenant_cgroup`.
//!
//! A generation `<pid>.<n>` (the module names it by the pid of the nginx
//! process that read the configuration, and the configuration load count)
//! is live while either of these runs, and is then left alone:
//! - a process whose command line is a keeper's naming it
//!   (`keeper ... --dir <socket dir>/<pid>.<n>`): its keeper, or its
//!   supervisor (a fork of the keeper, with the same command line), which
//!   keeps serving after its keeper was killed, and whose runners die with
//!   it (PR_SET_PDEATHSIG);
//! - the process `<pid>`, if it is an nginx (a master that outlived its
//!   keeper and supervisor: whatever is left in its groups is its own).
//!
//! Otherwise nothing of that nginx runs: what is still in the groups
//! escaped a runner (a daemonised CGI child) and is killed with them.
//! When `/proc` cannot be listed nothing is swept.

use std::collections::HashSet;

use cgroupfs::Tree;

use crate::log_notice;
use crate::log_warn;

/// The generations named by the keepers (and supervisors) running now;
/// `None` when `/proc` cannot be listed.
fn keeper_generations() -> Option<HashSet<String>> {
    let mut live = HashSet::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if let Some(generation) = keeper_generation(&cmdline) {
            live.insert(generation);
        }
    }
    Some(live)
}

/// The generation a keeper's command line names (`<program> keeper ...
/// --dir <path>/<generation> ...`, NUL-separated).
fn keeper_generation(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    if args.get(1) != Some(&&b"keeper"[..]) {
        return None;
    }
    let dir = args.windows(2).find(|pair| pair[0] == b"--dir").map(|pair| pair[1])?;
    let dir = std::path::Path::new(std::str::from_utf8(dir).ok()?);
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

/// Whether the process named in a generation (`<pid>.<n>`) is an nginx.
fn nginx_runs(generation: &str) -> bool {
    let Some((pid, _)) = generation.split_once('.') else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "nginx")
}

/// Removes the stale generations under `tree`'s path (`directive` names
/// it in the log: `resource_cgroup_root "R"`), one [notice] each.
pub fn sweep(tree: &Tree, directive: &str) {
    let candidates = tree.other_generations();
    if candidates.is_empty() {
        return;
    }
    let Some(live) = keeper_generations() else {
        log_warn!("supervisor: {directive}: cannot list /proc, stale generations are not removed");
        return;
    };
    for generation in candidates {
        if live.contains(&generation) || nginx_runs(&generation) {
            continue;
        }
        let (killed, problems) = tree.remove_generation(&generation);
        log_notice!(
            "supervisor: {directive}: removed the stale generation {generation} (no keeper, supervisor or nginx of \
             it runs; {killed} leftover process(es) killed)"
        );
        for problem in problems {
            log_warn!("supervisor: {directive}: stale generation {generation}: {problem}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_of_a_keeper_command_line() {
        let line =
            b"/usr/sbin/ngx-mruby-supervisor\0keeper\0--dir\0/run/ngx-mruby-tenants/4242.3\0--worker-uid\065534\0";
        assert_eq!(keeper_generation(line), Some(String::from("4242.3")));
        assert_eq!(keeper_generation(b"/x/supervisor\0cgi-runner\0--dir\0/run/t/1.1\0"), None);
        assert_eq!(keeper_generation(b"/x/supervisor\0keeper\0--worker-uid\01\0"), None);
        assert_eq!(keeper_generation(b"nginx: master process\0"), None);
        assert_eq!(keeper_generation(b""), None);
    }

    #[test]
    fn this_test_is_not_an_nginx() {
        assert!(!nginx_runs(&format!("{}.1", std::process::id())));
        assert!(!nginx_runs("not-a-generation"));
    }
}
