//! `M` and `H` lines: `Cgroup#attach(pid)` and `Cgroup#detach(pid)` of an
//! operator's script in a worker (`mruby_init_worker`, issue 10). The
//! worker holds no privilege and is never moved itself; the supervisor
//! moves the process for it, and only
//! - a pid that is one of its own runners (alive, not being killed, not
//!   serving a request in a resource class, whose moves are the class
//!   logic's): never a worker, the master, the supervisor or any other pid;
//! - into a group of the `Cgroup` API, one level below
//!   `resource_cgroup_root`, that exists: the path is built here from the
//!   name, which is checked again with the module's rule (so never a
//!   generation's directory, never outside the root).
//!
//! `detach` moves the runner back to its own group (its owner's, or the
//! supervisor's). An attach lasts until then, until the runner serves a
//! request in a resource class (it comes back to its own group after
//! that request), or until it exits. Every refusal is one `[error]` line
//! and an `ERR 403`; a failed write one `[error]` and `ERR 500`; a move
//! one `[notice]`.

use std::path::PathBuf;

use resource_policy::cgroup_files::check_group_name;
use tenant_protocol::Reply;

use super::Supervisor;
use crate::runners::ClientId;
use crate::{log_error, log_notice};

impl Supervisor {
    /// `M <tag> <controller> <group> <pid>`.
    pub(super) fn attach(&mut self, client: ClientId, tag: u32, controller: &str, group: &str, pid: i32) {
        let worker = self.clients.get(&client).map_or(0, |c| c.pid);
        let (dir, uid) = match self.attach_target(controller, group, pid) {
            Ok(target) => target,
            Err(reason) => {
                log_error!(
                    "supervisor: refused to attach pid {pid} to cgroup \"{group}\" ({controller}) asked by worker pid {worker}: {reason}"
                );
                self.reply(client, Reply::Err { tag, status: 403, reason });
                return;
            }
        };
        let procs = dir.join("cgroup.procs");
        match std::fs::write(&procs, pid.to_string()) {
            Ok(()) => {
                log_notice!(
                    "supervisor: runner pid {pid} of uid {uid} attached to {} (Cgroup#attach by worker pid {worker})",
                    dir.display()
                );
                self.reply(client, Reply::Done { tag });
            }
            Err(e) => {
                let reason = format!("cannot write {}: {e}", procs.display());
                log_error!("supervisor: cannot attach runner pid {pid} of uid {uid} (worker pid {worker}): {reason}");
                self.reply(client, Reply::Err { tag, status: 500, reason });
            }
        }
    }

    /// `H <tag> <pid>`.
    pub(super) fn detach(&mut self, client: ClientId, tag: u32, pid: i32) {
        let worker = self.clients.get(&client).map_or(0, |c| c.pid);
        let home =
            self.runner_uid(pid).and_then(|uid| self.home_group(uid).map(|home| (uid, home)).ok_or_else(no_root));
        let (uid, home) = match home {
            Ok(found) => found,
            Err(reason) => {
                log_error!("supervisor: refused to detach pid {pid} asked by worker pid {worker}: {reason}");
                self.reply(client, Reply::Err { tag, status: 403, reason });
                return;
            }
        };
        match home.enter(pid) {
            Ok(()) => {
                log_notice!(
                    "supervisor: runner pid {pid} of uid {uid} back in its own group (Cgroup#detach by worker pid {worker})"
                );
                self.reply(client, Reply::Done { tag });
            }
            Err(reason) => {
                log_error!("supervisor: cannot detach runner pid {pid} of uid {uid} (worker pid {worker}): {reason}");
                self.reply(client, Reply::Err { tag, status: 500, reason });
            }
        }
    }

    /// The owner of runner `pid`, if the pid is one this supervisor may move.
    fn runner_uid(&self, pid: i32) -> Result<u32, String> {
        let runner = self
            .table
            .iter()
            .find(|r| r.pid == pid && !r.killing)
            .ok_or_else(|| String::from("not a runner of this supervisor"))?;
        if let Some(class) = &runner.class {
            return Err(format!("the runner serves a request in resource class \"{class}\""));
        }
        Ok(runner.key.uid)
    }

    /// Where an attach goes, and the runner's owner.
    fn attach_target(&self, controller: &str, group: &str, pid: i32) -> Result<(PathBuf, u32), String> {
        let classes = self.config.classes.as_ref().ok_or_else(no_root)?;
        check_group_name(group)?;
        let uid = self.runner_uid(pid)?;
        let dir = classes
            .api_group_dir(controller, group)
            .ok_or_else(|| format!("this machine has no {controller} hierarchy"))?;
        if !dir.join("cgroup.procs").is_file() {
            return Err(format!("there is no group {} (create it first)", dir.display()));
        }
        Ok((dir, uid))
    }
}

fn no_root() -> String {
    String::from("no resource_cgroup_root in this configuration")
}
