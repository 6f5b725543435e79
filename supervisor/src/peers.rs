//! Who may talk to the supervisor: this nginx's workers, and nothing else.
//!
//! A peer's SO_PEERCRED uid and gid must be the worker user's, and its
//! parent (`/proc/<pid>/stat`) must be this nginx's master. Any other
//! process running as the worker user (a CGI script of a site not run
//! through a runner, a cron job, a shell) is refused at connect, with a
//! log line, before it can say anything.
//!
//! The master's pid: the module passes it when it starts the keeper from
//! the running master (a reload, or nginx not going to the background).
//! At the first start of a daemonizing nginx the master does not exist
//! yet (nginx forks it after the modules are set up), so the module
//! passes the pid file instead, which the master writes before it forks
//! any worker: it must be root's and not writable by others, and name a
//! root process started after the keeper (not a stale file). The pid is
//! looked up once and kept for the life of the generation.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Where the master's pid comes from (`--master-pid` or `--master-pid-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSource {
    Pid(i32),
    PidFile(PathBuf),
}

/// Fields of `/proc/<pid>/stat` this module reads.
struct ProcStat {
    ppid: i32,
    /// Clock ticks since boot.
    start_time: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // after "pid (comm)": state(3) ppid(4) ... starttime(22)
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(ProcStat { ppid: fields.get(1)?.parse().ok()?, start_time: fields.get(19)?.parse().ok()? })
}

fn real_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// The accept rule of one supervisor.
pub struct Peers {
    worker_uid: u32,
    worker_gid: u32,
    source: MasterSource,
    master: Option<i32>,
    /// The keeper's start time: the master of a daemonizing nginx started later.
    not_before: u64,
}

impl Peers {
    /// In the supervisor, whose parent is the keeper.
    pub fn new(worker_uid: u32, worker_gid: u32, source: MasterSource) -> Peers {
        let master = match source {
            MasterSource::Pid(pid) => Some(pid),
            MasterSource::PidFile(_) => None,
        };
        let keeper = nix::unistd::getppid().as_raw();
        let not_before = proc_stat(keeper).map_or(u64::MAX, |s| s.start_time);
        Peers { worker_uid, worker_gid, source, master, not_before }
    }

    /// The master's pid, once known (reads the pid file until it is).
    pub fn master(&mut self) -> Result<i32, String> {
        if let Some(pid) = self.master {
            return Ok(pid);
        }
        let MasterSource::PidFile(path) = &self.source else {
            return Err(String::from("no master pid"));
        };
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("nginx's pid file {shown}: {e}"))?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!("nginx's pid file {shown} is not root's or is writable by others"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("nginx's pid file {shown}: {e}"))?;
        let pid: i32 = text.trim().parse().map_err(|_| format!("nginx's pid file {shown} holds no pid"))?;
        let stat = proc_stat(pid).ok_or_else(|| format!("the pid {pid} in {shown} is not running"))?;
        if real_uid(pid) != Some(0) || stat.start_time < self.not_before {
            return Err(format!("the pid {pid} in {shown} is not the master started with this supervisor"));
        }
        self.master = Some(pid);
        Ok(pid)
    }

    /// Whether the peer `pid` (SO_PEERCRED `uid`, `gid`) is a worker of
    /// this nginx; the error says why not.
    pub fn check(&mut self, pid: i32, uid: u32, gid: u32) -> Result<(), String> {
        if uid != self.worker_uid || gid != self.worker_gid {
            return Err(format!("not an nginx worker (not the worker user {}:{})", self.worker_uid, self.worker_gid));
        }
        let master = self.master().map_err(|e| format!("cannot tell nginx's workers yet: {e}"))?;
        let parent = proc_stat(pid).map(|s| s.ppid);
        if parent != Some(master) {
            let parent = parent.map_or_else(|| String::from("unknown"), |p| format!("pid {p}"));
            return Err(format!("not an nginx worker (its parent is {parent}, not this nginx's master pid {master})"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parent_and_start_time() {
        let me = proc_stat(std::process::id() as i32).expect("own stat");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(me.start_time > 0);
        assert_eq!(real_uid(std::process::id() as i32), Some(nix::unistd::getuid().as_raw()));
    }

    #[test]
    fn only_children_of_the_master_with_the_worker_user() {
        let me = std::process::id() as i32;
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let parent = nix::unistd::getppid().as_raw();
        let mut peers = Peers::new(uid, gid, MasterSource::Pid(parent));
        assert_eq!(peers.check(me, uid, gid), Ok(()));
        assert!(peers.check(me, uid + 1, gid).is_err_and(|e| e.contains("not the worker user")));
        let mut other = Peers::new(uid, gid, MasterSource::Pid(me));
        assert!(other.check(me, uid, gid).is_err_and(|e| e.contains(&format!("its parent is pid {parent}"))));
    }

    #[test]
    fn pid_file_must_be_trustworthy() {
        let dir = std::env::temp_dir().join(format!("ngx-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("nginx.pid");
        std::fs::write(&file, "1\n").expect("write");
        let mut peers = Peers::new(0, 0, MasterSource::PidFile(dir.join("missing.pid")));
        assert!(peers.master().is_err());
        let mut peers = Peers::new(0, 0, MasterSource::PidFile(file.clone()));
        // pid 1 started before this test's parent: a stale file, refused
        if nix::unistd::geteuid().is_root() {
            assert!(peers.master().is_err_and(|e| e.contains("not the master started")));
        }
        std::fs::write(&file, "nonsense").expect("write");
        assert!(peers.master().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
