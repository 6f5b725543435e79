//! The keeper: the process the module execs from nginx's master. It
//! detaches, drops every privilege but those needed to create runners,
//! prepares the socket directory, then forks the supervisor and starts a
//! new one whenever it dies, until nginx exits (EOF on the life pipe).
//! As a child subreaper it also reaps the runners of a supervisor that was
//! killed (they die with it: PR_SET_PDEATHSIG).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::config::Config;
use crate::{log_error, log_info, log_notice, log_warn};

/// The life pipe's read end, as the module passes it.
pub const LIFE_FD: i32 = 3;

/// How long a killed supervisor stays down before the next one starts.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The capabilities the keeper and the supervisor keep: switch identity
/// (SETUID, SETGID), clear a runner's bounding set (SETPCAP), kill runners
/// of other uids (KILL), give socket files to the worker group (CHOWN), and
/// stat document roots below directories root cannot search
/// (DAC_READ_SEARCH). Nothing else, bounding set included.
pub const KEPT_CAPS: [Capability; 6] = [
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_KILL,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_READ_SEARCH,
];

fn set_name(name: &str) {
    if let Ok(name) = std::ffi::CString::new(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// With `tenant_cgroup`, the keeper alone also keeps CAP_DAC_OVERRIDE: a v1
/// hierarchy's root directory is 0555, so creating and removing the
/// configured path there needs it. The keeper talks to no one (the
/// supervisor does), and the supervisor drops it right after the fork.
const CGROUP_CAP: Capability = Capability::CAP_DAC_OVERRIDE;

fn drop_privileges(cgroups: bool) -> Result<(), String> {
    let mut keep: CapsHashSet = KEPT_CAPS.iter().copied().collect();
    if cgroups {
        keep.insert(CGROUP_CAP);
    }
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("bounding set {cap}: {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient set: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("inheritable set: {e}"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(|e| format!("effective set: {e}"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| format!("permitted set: {e}"))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(String::from("PR_SET_NO_NEW_PRIVS failed"));
    }
    Ok(())
}

/// Runs the keeper; never returns.
pub fn run(config: Config) -> ! {
    // the master waits for this first process: it only detaches
    // SAFETY: single-threaded here; the child continues this function.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            log_error!("supervisor: fork: {e}");
            std::process::exit(1)
        }
    }
    let _ = nix::unistd::setsid();
    set_name("tenant-keeper");
    if !nix::unistd::geteuid().is_root() {
        log_error!("supervisor: must be started as root to create runners of other users");
        std::process::exit(1);
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut config = config;
    let cgroups = config.cgroup_path.is_some() || config.resource_root.is_some();
    if let Err(e) =
        drop_privileges(cgroups).and_then(|()| crate::dirs::prepare(&config)).and_then(|()| make_cgroups(&mut config))
    {
        log_error!("supervisor: {e}");
        crate::dirs::clean(&config);
        std::process::exit(1);
    }
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP] {
        mask.add(signal);
    }
    let _ = mask.thread_block();
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            log_error!("supervisor: signalfd: {e}");
            std::process::exit(1)
        }
    };
    let follow = config.error_log.clone().map(|path| crate::log::Follow::new("keeper", path, config.worker_uid));
    Keeper { config, signals, supervisor: None, restart_at: Some(Instant::now()), follow }.run()
}

/// In the supervisor, just forked: only [`KEPT_CAPS`] remain, in every set.
fn drop_keeper_only_caps() -> Result<(), String> {
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Bounding] {
        caps::drop(None, set, CGROUP_CAP).map_err(|e| format!("dropping {CGROUP_CAP} from {set:?}: {e}"))?;
    }
    Ok(())
}

/// `tenant_cgroup` and `resource_cgroup_root`: this generation's groups,
/// before any runner exists. With `tenant_resource_class`, owners' groups
/// are that class's (`classes.rs`), and `tenant_cgroup` is not used.
///
/// Both sub-trees are also swept of the generations a keeper that did not
/// stop normally left behind (`stale.rs`).
fn make_cgroups(config: &mut Config) -> Result<(), String> {
    if let (Some(root), Some(path)) = (&config.resource_root, &config.cgroup_path) {
        // `nginx -t` refuses this too; checked again where the groups are made
        let layout = cgroupfs::Layout::detect().map_err(|e| format!("resource_cgroup_root: {e}"))?;
        let classes = cgroupfs::Tree::new(layout.clone(), root, &config.generation());
        if classes.overlaps(&cgroupfs::Tree::new(layout, path, &config.generation())) {
            return Err(format!(
                "resource_cgroup_root \"{root}\" and tenant_cgroup \"{path}\" are the same cgroup sub-tree or one \
                 is inside the other: owners' groups and class groups would collide"
            ));
        }
    }
    if let Some(root) = &config.resource_root {
        let layout = cgroupfs::Layout::detect().map_err(|e| format!("resource_cgroup_root: {e}"))?;
        let tree = cgroupfs::Tree::new(layout.clone(), root, &config.generation());
        crate::stale::sweep(&tree, &format!("resource_cgroup_root \"{root}\""));
        let classes = crate::classes::Classes::create(
            layout,
            root,
            &config.generation(),
            &config.resource_classes,
            config.tenant_class.as_deref(),
        )
        .map_err(|e| format!("resource_cgroup_root \"{root}\": {e}"))?;
        log_info!("supervisor: resource classes in {}", classes.describe());
        let io_classes: Vec<&str> = config
            .resource_classes
            .iter()
            .filter(|s| s.io_read_bps.is_some() || s.io_write_bps.is_some())
            .map(|s| s.name.as_str())
            .collect();
        if !io_classes.is_empty() {
            let disks: Vec<String> = classes.disks().iter().map(|d| format!("{} ({})", d.name, d.number)).collect();
            if disks.is_empty() {
                log_warn!(
                    "supervisor: resource_class {}: io_read=/io_write= apply to no disk: /sys/block lists no whole disk",
                    io_classes.join(", ")
                );
            } else {
                log_info!(
                    "supervisor: resource_class {}: I/O rates on each of {}",
                    io_classes.join(", "),
                    disks.join(", ")
                );
            }
        }
        if let Some((owners, class)) = classes.owners() {
            if let Some(path) = &config.cgroup_path {
                log_warn!(
                    "supervisor: tenant_resource_class \"{}\" places the runners, tenant_cgroup \"{path}\" is not used",
                    class.name
                );
            }
            config.cgroups = Some(owners.clone());
            config.classes = Some(classes);
            return Ok(());
        }
        config.classes = Some(classes);
    }
    let Some(path) = &config.cgroup_path else {
        return Ok(());
    };
    let layout = cgroupfs::Layout::detect().map_err(|e| format!("tenant_cgroup: {e}"))?;
    let tree = cgroupfs::Tree::new(layout, path, &config.generation());
    crate::stale::sweep(&tree, &format!("tenant_cgroup \"{path}\""));
    tree.create().map_err(|e| format!("tenant_cgroup \"{path}\": {e}"))?;
    log_info!("supervisor: runners go into {} under \"{path}\"", tree.layout.describe());
    config.cgroups = Some(tree);
    Ok(())
}

struct Keeper {
    config: Config,
    signals: SignalFd,
    supervisor: Option<Pid>,
    restart_at: Option<Instant>,
    /// The error log across `nginx -s reopen`.
    follow: Option<crate::log::Follow>,
}

impl Keeper {
    fn run(&mut self) -> ! {
        loop {
            if self.supervisor.is_none() && self.restart_at.is_some_and(|at| at <= Instant::now()) {
                self.start_supervisor();
            }
            let mut fds = [
                libc::pollfd { fd: LIFE_FD, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: fds is a live array of two pollfd structs.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 200) };
            if fds[0].revents != 0 && self.life_ended() {
                self.stop("nginx has exited");
            }
            while let Ok(Some(info)) = self.signals.read_signal() {
                if info.ssi_signo as i32 != libc::SIGCHLD {
                    self.stop("termination signal received");
                }
            }
            self.reap();
            if let Some(follow) = &mut self.follow {
                follow.check();
            }
        }
    }

    fn life_ended(&self) -> bool {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer from the inherited pipe.
        let n = unsafe { libc::read(LIFE_FD, buf.as_mut_ptr().cast(), buf.len()) };
        n == 0 || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
    }

    fn start_supervisor(&mut self) {
        // runner sockets of a supervisor that died are stale
        crate::dirs::clean_sockets(&self.config);
        // SAFETY: single-threaded; the child runs the supervisor loop and exits.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                set_name("tenant-supervis");
                if let Err(e) = drop_keeper_only_caps() {
                    log_error!("supervisor: {e}");
                    std::process::exit(1);
                }
                crate::server::run(self.config.clone(), LIFE_FD)
            }
            Ok(ForkResult::Parent { child }) => {
                self.supervisor = Some(child);
                self.restart_at = None;
            }
            Err(e) => {
                log_error!("supervisor: fork: {e}");
                self.restart_at = Some(Instant::now() + RESTART_DELAY);
            }
        }
    }

    /// Reaps the supervisor (scheduling its restart) and orphaned runners.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            if status.pid().is_some() && status.pid() == self.supervisor {
                let how = match status {
                    WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
                    WaitStatus::Exited(_, code) => format!("exited with code {code}"),
                    _ => String::from("stopped"),
                };
                log_error!(
                    "supervisor: supervisor pid {} {how}; starting a new one in {} ms",
                    self.supervisor.map_or(0, |p| p.as_raw()),
                    RESTART_DELAY.as_millis()
                );
                self.supervisor = None;
                self.restart_at = Some(Instant::now() + RESTART_DELAY);
            }
        }
    }

    fn stop(&mut self, why: &str) -> ! {
        log_notice!("supervisor: keeper stopping: {why}");
        if let Some(pid) = self.supervisor {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
        // orphaned runners were SIGKILLed by their parent's death; reap them
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                std::thread::sleep(Duration::from_millis(20));
                if waitpid(None, Some(WaitPidFlag::WNOHANG)).is_err() {
                    break;
                }
            }
        }
        if let Some(tree) = &self.config.cgroups {
            for problem in tree.remove_all() {
                log_warn!("supervisor: {problem}");
            }
        }
        if let Some(classes) = &self.config.classes {
            for problem in classes.remove_all() {
                log_warn!("supervisor: {problem}");
            }
        }
        crate::dirs::clean(&self.config);
        std::process::exit(0)
    }
}
