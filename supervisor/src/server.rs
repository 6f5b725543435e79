//! The supervisor process: accepts nginx workers on `supervisor.sock`,
//! answers their requests for runners, creates and reaps runners, relays
//! runner stderr to the error log. One thread, one `poll` loop.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::config::{Config, RunnerProgram};
use crate::peers::Peers;
use crate::runners::{ClientId, Decision, Runner, RunnerKey, RunnerTable};
use crate::sandbox::{self, RunnerSpec};
use crate::stderr_budget::{self, StderrBudget, Verdict};
use crate::{log_error, log_info, log_notice, log_warn};
use tenant_protocol::{self as protocol, Reply, Request, Spawn};

mod attach;

/// How long a discarded runner may take to exit on its own before it is
/// killed (a runner killed mid-request has closed its socket before its
/// SIGCHLD arrives, so the worker's discard can come first).
const DISCARD_DELAY: Duration = Duration::from_millis(100);

/// How long after an owner's last runner exits its cgroups are emptied and
/// removed (its session's processes, killed with it, are gone by then).
const CGROUP_CLEANUP_DELAY: Duration = Duration::from_millis(200);

/// The name of the supervisor's socket in the generation directory.
pub const SOCKET_NAME: &str = "supervisor.sock";

/// A connected nginx worker.
struct Client {
    stream: UnixStream,
    pid: i32,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// A request waiting for a runner.
struct Waiting {
    client: ClientId,
    tag: u32,
    key: RunnerKey,
    program: RunnerProgram,
    deadline: Instant,
    /// It had to wait at least once (`$tenant_spawn` = `queued`).
    queued: bool,
    /// It already killed an idle runner to make room.
    evicted: bool,
    /// The request's resource class: the runner is moved into its group.
    class: Option<String>,
}

/// A runner's stderr pipe and its unfinished line.
struct StderrPipe {
    fd: OwnedFd,
    partial: Vec<u8>,
    /// Whose lines these are: kept here, as the runner leaves the table
    /// before its last lines are read.
    pid: i32,
    uid: u32,
}

struct Supervisor {
    config: Config,
    /// Who may connect: this nginx's workers.
    peers: Peers,
    /// The error log across `nginx -s reopen`.
    follow: Option<crate::log::Follow>,
    pid: i32,
    listener: UnixListener,
    signals: SignalFd,
    life_fd: RawFd,
    clients: HashMap<ClientId, Client>,
    next_client: ClientId,
    table: RunnerTable,
    queue: VecDeque<Waiting>,
    pipes: HashMap<u64, StderrPipe>,
    /// Lines per owner the error log still takes (a rate limit).
    stderr_budget: StderrBudget,
    /// Owners without runners whose cgroups are removed at the given time.
    cgroup_cleanup: HashMap<u32, Instant>,
    /// Per class: the OOM kill count of its group already logged.
    oom_logged: HashMap<String, u64>,
    /// Per owner (`tenant_resource_class`): the same for its group.
    owner_oom_logged: HashMap<u32, u64>,
}

/// Makes a socket file reachable by the nginx workers only (root:worker group, 0660).
pub fn restrict_socket(path: &Path, worker_gid: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    std::os::unix::fs::chown(path, Some(0), Some(worker_gid))
}

/// Runs the supervisor until nginx goes away (`life_fd` reaches EOF) or a
/// termination signal; never returns.
pub fn run(config: Config, life_fd: RawFd) -> ! {
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP] {
        mask.add(signal);
    }
    if let Err(e) = mask.thread_block() {
        fatal(&format!("cannot block signals: {e}"));
    }
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .unwrap_or_else(|e| fatal(&format!("signalfd: {e}")));
    let socket = config.socket_dir().join(SOCKET_NAME);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap_or_else(|e| fatal(&format!("bind {}: {e}", socket.display())));
    if let Err(e) = restrict_socket(&socket, config.worker_gid) {
        fatal(&format!("cannot restrict {}: {e}", socket.display()));
    }
    if let Err(e) = listener.set_nonblocking(true) {
        fatal(&format!("listener: {e}"));
    }
    log_notice!("supervisor started on {} (pid {})", socket.display(), std::process::id());
    let master = config.master.clone().unwrap_or_else(|| fatal("no master pid"));
    let mut supervisor = Supervisor {
        peers: Peers::new(config.worker_uid, config.worker_gid, master),
        follow: config.error_log.clone().map(|path| crate::log::Follow::new("supervisor", path, config.worker_uid)),
        pid: std::process::id() as i32,
        config,
        listener,
        signals,
        life_fd,
        clients: HashMap::new(),
        next_client: 0,
        table: RunnerTable::default(),
        queue: VecDeque::new(),
        pipes: HashMap::new(),
        stderr_budget: StderrBudget::default(),
        cgroup_cleanup: HashMap::new(),
        oom_logged: HashMap::new(),
        owner_oom_logged: HashMap::new(),
    };
    supervisor.run()
}

fn fatal(message: &str) -> ! {
    log_error!("supervisor: {message}");
    std::process::exit(1)
}

/// Where a poll slot's readiness goes.
#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Life,
    Listener,
    Client(ClientId),
    Pipe(u64),
}

impl Supervisor {
    fn run(&mut self) -> ! {
        loop {
            let mut slots = vec![Slot::Signals, Slot::Life, Slot::Listener];
            let mut fds = vec![
                pollfd(self.signals.as_raw_fd(), libc::POLLIN),
                pollfd(self.life_fd, libc::POLLIN),
                pollfd(self.listener.as_raw_fd(), libc::POLLIN),
            ];
            for (id, client) in &self.clients {
                let events = if client.outbuf.is_empty() { libc::POLLIN } else { libc::POLLIN | libc::POLLOUT };
                slots.push(Slot::Client(*id));
                fds.push(pollfd(client.stream.as_raw_fd(), events));
            }
            for (id, pipe) in &self.pipes {
                slots.push(Slot::Pipe(*id));
                fds.push(pollfd(pipe.fd.as_raw_fd(), libc::POLLIN));
            }
            let timeout = self.next_timeout();
            // SAFETY: fds is a live array of fds.len() pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                fatal(&format!("poll: {}", std::io::Error::last_os_error()));
            }
            for (slot, fd) in slots.iter().zip(fds.iter()) {
                if fd.revents == 0 {
                    continue;
                }
                match *slot {
                    Slot::Signals => self.on_signals(),
                    Slot::Life => self.on_life(),
                    Slot::Listener => self.on_accept(),
                    Slot::Client(id) => self.on_client(id, fd.revents),
                    Slot::Pipe(id) => self.on_pipe(id),
                }
            }
            // looked up as soon as the master has written its pid file (a
            // second at most), before a binary upgrade could rename it
            let _ = self.peers.master();
            if let Some(follow) = &mut self.follow {
                follow.check();
            }
            self.on_timers();
            self.serve_queue();
            self.flush_all();
        }
    }

    /// Milliseconds until the next queue deadline or idle reaping (at most 1 s).
    fn next_timeout(&self) -> i32 {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        for w in &self.queue {
            next = next.min(w.deadline);
        }
        for at in self.cgroup_cleanup.values() {
            next = next.min(*at);
        }
        for r in self.table.iter().filter(|r| !r.killing) {
            match r.discard_at {
                Some(at) => next = next.min(at),
                None if r.lessee.is_none() => next = next.min(r.last_used + self.config.idle_timeout),
                None => {}
            }
        }
        next.saturating_duration_since(now).as_millis().min(1000) as i32 + 1
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(signal) => {
                    log_notice!("supervisor: {signal} received, stopping runners");
                    self.shutdown()
                }
                Err(_) => {}
            }
        }
    }

    /// EOF on the life pipe: every nginx process that held it has exited.
    fn on_life(&mut self) {
        let mut byte = [0u8; 64];
        // SAFETY: reads into a local buffer from the inherited pipe.
        let n = unsafe { libc::read(self.life_fd, byte.as_mut_ptr().cast(), byte.len()) };
        if n == 0 || (n < 0 && std::io::Error::last_os_error().kind() != ErrorKind::WouldBlock) {
            log_info!("supervisor: nginx has exited, stopping runners");
            self.shutdown();
        }
    }

    fn on_accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log_error!("supervisor: accept: {e}");
                    return;
                }
            };
            let cred = match getsockopt(&stream, PeerCredentials) {
                Ok(cred) => cred,
                Err(e) => {
                    log_error!("supervisor: refused a connection: no peer credentials: {e}");
                    continue;
                }
            };
            if let Err(why) = self.peers.check(cred.pid(), cred.uid(), cred.gid()) {
                log_error!(
                    "supervisor: refused a connection from pid {} uid {} gid {}: {why}",
                    cred.pid(),
                    cred.uid(),
                    cred.gid()
                );
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.next_client += 1;
            let client = Client { stream, pid: cred.pid(), inbuf: Vec::new(), outbuf: Vec::new() };
            self.clients.insert(self.next_client, client);
        }
    }

    fn on_client(&mut self, id: ClientId, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            self.flush(id);
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        let mut closed = false;
        let mut lines = Vec::new();
        if let Some(client) = self.clients.get_mut(&id) {
            let mut buf = [0u8; 16384];
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => client.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            while let Some(end) = client.inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = client.inbuf.drain(..=end).collect();
                lines.push(line[..line.len() - 1].to_vec());
            }
            if client.inbuf.len() > protocol::MAX_LINE {
                log_error!(
                    "supervisor: worker pid {} sent a line longer than {} bytes, disconnected",
                    client.pid,
                    protocol::MAX_LINE
                );
                closed = true;
            }
        }
        for line in lines {
            self.on_line(id, &line);
        }
        if closed {
            self.drop_client(id);
        }
    }

    fn on_line(&mut self, client: ClientId, line: &[u8]) {
        let pid = self.clients.get(&client).map_or(0, |c| c.pid);
        match Request::parse(line) {
            Ok(Request::Acquire { tag, kind, uid, gid, docroot, class }) => {
                self.acquire(client, tag, kind, uid, gid, docroot, class)
            }
            Ok(Request::Release { runner, served }) => self.release(client, runner, served, false),
            Ok(Request::Discard { runner }) => self.release(client, runner, 1, true),
            Ok(Request::Busy { runner }) => {
                if let Some(r) = self.table.get_mut(runner).filter(|r| r.lessee == Some(client)) {
                    r.busy = true;
                }
            }
            Ok(Request::Attach { tag, controller, group, pid }) => self.attach(client, tag, &controller, &group, pid),
            Ok(Request::Detach { tag, pid }) => self.detach(client, tag, pid),
            Err(reason) => {
                log_error!(
                    "supervisor: refused a malformed request from worker pid {pid}: {reason}: \"{}\"",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                );
                self.reply(client, Reply::Err { tag: 0, status: 400, reason: String::from("malformed request") });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &mut self,
        client: ClientId,
        tag: u32,
        kind: String,
        uid: u32,
        gid: u32,
        docroot: PathBuf,
        class: Option<String>,
    ) {
        let pid = self.clients.get(&client).map_or(0, |c| c.pid);
        // only the module's own class groups: a name no resource_class declared is refused
        if let Some(name) = &class {
            if self.config.classes.is_none() || self.config.class(name).is_none() {
                log_error!(
                    "supervisor: refused a runner in unknown resource class \"{name}\" asked by worker pid {pid}"
                );
                self.reply(client, Reply::Err { tag, status: 500, reason: String::from("unknown class") });
                return;
            }
        }
        let Some(program) = self.config.program(&kind) else {
            log_error!("supervisor: refused a runner of unknown kind \"{kind}\" asked by worker pid {pid}");
            self.reply(client, Reply::Err { tag, status: 403, reason: String::from("unknown kind") });
            return;
        };
        if let Err(reason) = crate::owner::check_docroot(&self.config, &docroot, uid, gid) {
            log_error!(
                "supervisor: refused a runner for uid:gid {uid}:{gid} document root \"{}\" asked by worker pid {pid}: {reason}",
                docroot.display()
            );
            self.reply(client, Reply::Err { tag, status: 403, reason: String::from("refused") });
            return;
        }
        let key = RunnerKey { uid, gid, docroot, kind };
        let deadline = Instant::now() + self.config.queue_timeout;
        self.queue.push_back(Waiting { client, tag, key, program, deadline, queued: false, evicted: false, class });
    }

    /// The worker holding runner `id` gives it back after `served`
    /// requests; `discard`: the last one ended badly.
    fn release(&mut self, client: ClientId, id: u64, served: u64, discard: bool) {
        let max_requests = self.config.max_requests;
        let Some(runner) = self.table.get_mut(id) else {
            return; // it died (and was logged) while the request ran
        };
        if runner.lessee != Some(client) {
            let pid = self.clients.get(&client).map_or(0, |c| c.pid);
            log_error!("supervisor: refused a release of runner {id} by worker pid {pid}, which does not hold it");
            return;
        }
        let (pid, uid) = (runner.pid, runner.key.uid);
        let oom_kills_before = runner.class_oom_kills.take();
        let classed = runner.class.take();
        runner.lessee = None;
        runner.asked_back = false;
        runner.busy = false;
        runner.requests = runner.requests.saturating_add(served);
        runner.last_used = Instant::now();
        if let Some(class) = classed {
            self.leave_class(pid, uid, &class);
            self.log_oom_kills(pid, uid, &class, oom_kills_before, discard);
        }
        if discard {
            self.log_owner_oom_kills(pid, uid);
        }
        let Some(runner) = self.table.get_mut(id) else {
            return;
        };
        if discard {
            // still held until killed; if it died on its own, its SIGCHLD comes first
            runner.lessee = Some(client);
            runner.discard_at = Some(Instant::now() + DISCARD_DELAY);
            return;
        }
        if max_requests > 0 && runner.requests >= max_requests && !runner.killing {
            log_info!(
                "supervisor: recycling runner pid {} of uid {} after {} requests",
                runner.pid,
                runner.key.uid,
                runner.requests
            );
            self.kill_runner(id);
        }
    }

    /// Hands runners to waiting requests, spawning or evicting as the rules say.
    fn serve_queue(&mut self) {
        let waiting = self.queue.len();
        let mut still_waiting = VecDeque::new();
        while let Some(mut w) = self.queue.pop_front() {
            if !self.clients.contains_key(&w.client) {
                continue;
            }
            match self.table.decide(&w.key, w.client, self.config.max_runners, self.config.max_per_owner) {
                Decision::Hit(id) => {
                    let spawn = if w.queued { Spawn::Queued } else { Spawn::Hit };
                    self.lease(&w, id, spawn);
                }
                Decision::Spawn => match self.spawn(&w.key, &w.program, w.class.as_deref()) {
                    Ok(id) => {
                        let spawn = if w.queued { Spawn::Queued } else { Spawn::Spawned };
                        self.lease(&w, id, spawn);
                    }
                    Err(reason) => {
                        log_error!(
                            "supervisor: cannot start a runner for uid {} document root \"{}\": {reason}",
                            w.key.uid,
                            w.key.docroot.display()
                        );
                        self.reply(
                            w.client,
                            Reply::Err { tag: w.tag, status: 500, reason: String::from("spawn failed") },
                        );
                    }
                },
                Decision::Evict(id) => {
                    if !w.evicted {
                        if let Some(r) = self.table.get(id) {
                            log_info!(
                                "supervisor: reaping idle runner pid {} of uid {} to make room for uid {}",
                                r.pid,
                                r.key.uid,
                                w.key.uid
                            );
                        }
                        self.kill_runner(id);
                        w.evicted = true;
                    }
                    w.queued = true;
                    still_waiting.push_back(w);
                }
                Decision::Reclaim(id) => {
                    if self.table.get(id).is_some_and(|r| !r.asked_back) {
                        self.ask_back(id);
                    }
                    still_waiting.push_back(w);
                }
                Decision::Wait => {
                    // workers keep runners between requests: ask for the ones that would do
                    for id in
                        self.table.to_ask_back(&w.key, self.config.max_runners, self.config.max_per_owner, waiting)
                    {
                        self.ask_back(id);
                    }
                    w.queued = true;
                    still_waiting.push_back(w);
                }
            }
        }
        self.queue = still_waiting;
    }

    fn lease(&mut self, w: &Waiting, id: u64, spawn: Spawn) {
        let Some(runner) = self.table.get_mut(id) else {
            return;
        };
        runner.lessee = Some(w.client);
        runner.asked_back = false;
        runner.busy = false;
        runner.last_used = Instant::now();
        // a worker keeps a runner for at most half its life per lease, so the
        // supervisor hears of it before it must be recycled
        let (budget, last_lease) = match self.config.max_requests {
            0 => (0, false),
            max => {
                let budget = max.saturating_sub(runner.requests).max(1).min(max.div_ceil(2));
                (budget, runner.requests > 0 && runner.requests + budget >= max)
            }
        };
        let key = runner.key.clone();
        let (pid, uid) = (runner.pid, runner.key.uid);
        if let Some(class) = &w.class {
            if self.enter_class(pid, uid, class) {
                let oom_kills = self.class_oom_kills(class);
                if let Some(runner) = self.table.get_mut(id) {
                    runner.class = Some(class.clone());
                    runner.class_oom_kills = oom_kills;
                }
            }
        }
        let Some(runner) = self.table.get(id) else {
            return;
        };
        let reply = Reply::Ok {
            tag: w.tag,
            runner: id,
            pid: runner.pid,
            uid: runner.key.uid,
            spawn,
            budget,
            socket: runner.socket.clone(),
        };
        self.reply(w.client, reply);
        if last_lease {
            self.start_standby(&key, &w.program);
        }
    }

    /// Moves runner `pid` of `uid` into `class`'s group before its request
    /// is passed. On failure (logged) the request runs in the runner's own group.
    fn enter_class(&self, pid: i32, uid: u32, class: &str) -> bool {
        let Some(classes) = &self.config.classes else {
            return false;
        };
        let group = cgroupfs::OwnerGroup { dirs: classes.class_dirs(class) };
        match group.enter(pid) {
            Ok(()) => true,
            Err(e) => {
                log_error!(
                    "supervisor: cannot move runner pid {pid} of uid {uid} into resource class \"{class}\": {e}"
                );
                self.leave_class(pid, uid, class);
                false
            }
        }
    }

    /// Moves runner `pid` of `uid` back to its own group after a class.
    fn leave_class(&self, pid: i32, uid: u32, class: &str) {
        let Some(home) = self.home_group(uid) else {
            return;
        };
        if let Err(e) = home.enter(pid) {
            log_error!("supervisor: cannot move runner pid {pid} of uid {uid} out of resource class \"{class}\": {e}");
        }
    }

    /// For a class with `memory=`: its group's OOM kill count now.
    fn class_oom_kills(&self, class: &str) -> Option<u64> {
        self.config.class(class)?.memory_bytes?;
        self.config.classes.as_ref()?.oom_kills(class)
    }

    /// After runner `pid` left `class`: one line when the kernel's OOM
    /// killer stopped a process in the class's group since it entered (the
    /// kernel's count, not anything the runner says; each kill is logged
    /// once). The count is the class's: a runner whose request succeeded
    /// while others are still in the class leaves the kill to be logged by
    /// the one whose request fails (the victim's, most likely).
    fn log_oom_kills(&mut self, pid: i32, uid: u32, class: &str, before: Option<u64>, failed: bool) {
        let (Some(before), Some(now)) = (before, self.class_oom_kills(class)) else {
            return;
        };
        if !failed && self.table.iter().any(|r| r.pid != pid && r.class.as_deref() == Some(class)) {
            return;
        }
        let logged = self.oom_logged.get(class).copied().unwrap_or(0);
        if now <= before.max(logged) {
            return;
        }
        let kills = now - before.max(logged);
        self.oom_logged.insert(class.to_string(), now);
        let memory = self.config.class(class).and_then(|c| c.memory_bytes).unwrap_or(0);
        let memory = resource_policy::units::format_size(memory);
        let outcome = if failed { "; the request failed" } else { "" };
        log_error!(
            "supervisor: the kernel killed {kills} process(es) out of memory in resource class \"{class}\" (memory={memory}) \
             while runner pid {pid} of uid {uid} served a request there{outcome}"
        );
    }

    /// With `tenant_resource_class memory=`, after a request of runner
    /// `pid` failed or the runner died: one line when the kernel's OOM
    /// killer stopped a process in its owner's group since the last line
    /// (the group's count, read only then: a kill that failed no request
    /// is logged with the next one that does).
    fn log_owner_oom_kills(&mut self, pid: i32, uid: u32) {
        let Some(classes) = &self.config.classes else {
            return;
        };
        let Some(memory) = classes.owners().and_then(|(_, class)| class.memory_bytes.map(|m| (class.name.clone(), m)))
        else {
            return;
        };
        let Some(now) = classes.owner_oom_kills(uid) else {
            return;
        };
        let logged = self.owner_oom_logged.get(&uid).copied().unwrap_or(0);
        if now <= logged {
            return;
        }
        self.owner_oom_logged.insert(uid, now);
        let (class, bytes) = memory;
        log_error!(
            "supervisor: the kernel killed {} process(es) out of memory in the group of uid {uid} \
             (tenant_resource_class \"{class}\", memory={}); seen when runner pid {pid} failed a request or died",
            now - logged,
            resource_policy::units::format_size(bytes)
        );
    }

    /// A runner's own group, with resource classes: its owner's
    /// (`tenant_cgroup`, `tenant_resource_class`) or the supervisor's.
    fn home_group(&self, uid: u32) -> Option<cgroupfs::OwnerGroup> {
        let classes = self.config.classes.as_ref()?;
        Some(match &self.config.cgroups {
            Some(tree) => tree.owner(uid),
            None => cgroupfs::OwnerGroup { dirs: classes.own_dirs() },
        })
    }

    /// A runner's last lease before it is recycled: start its successor now,
    /// when the caps allow and no other runner of its key is idle, so that
    /// the request after the recycling does not wait for an interpreter to
    /// start.
    fn start_standby(&mut self, key: &RunnerKey, program: &RunnerProgram) {
        let idle = self.table.iter().any(|r| &r.key == key && r.lessee.is_none() && !r.killing);
        let owner = self.table.iter().filter(|r| r.key.uid == key.uid).count();
        if idle || owner >= self.config.max_per_owner || self.table.len() >= self.config.max_runners {
            return;
        }
        match self.spawn(key, program, None) {
            Ok(_) => log_info!(
                "supervisor: started a standby runner for uid {} (a runner nears tenant_max_requests)",
                key.uid
            ),
            Err(reason) => log_error!("supervisor: cannot start a standby runner for uid {}: {reason}", key.uid),
        }
    }

    /// Asks the worker holding runner `id` to give it back (at once when it
    /// keeps it idle, else when its request ends).
    fn ask_back(&mut self, id: u64) {
        let Some(runner) = self.table.get_mut(id) else {
            return;
        };
        let Some(client) = runner.lessee else {
            return;
        };
        runner.asked_back = true;
        self.reply(client, Reply::GiveBack { runner: id });
    }

    /// Creates a runner: binds its socket here (so the runner needs no
    /// write access to the socket directory), forks, and the child confines
    /// itself and execs.
    /// `class`: the resource class of the request it is started for: the
    /// runner enters that group itself instead of its owner's (the owner's
    /// is still made, for its way back), so the lease does not race its setup.
    fn spawn(&mut self, key: &RunnerKey, program: &RunnerProgram, class: Option<&str>) -> Result<u64, String> {
        let id = self.table.next_id();
        let socket = self.config.socket_dir().join(format!("r{id}.sock"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
        restrict_socket(&socket, self.config.worker_gid).map_err(|e| format!("{}: {e}", socket.display()))?;
        let (pipe_read, pipe_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let tmp = crate::dirs::owner_tmp(&self.config, key.uid, key.gid)?;
        self.cgroup_cleanup.remove(&key.uid);
        let cgroup = match &self.config.cgroups {
            Some(tree) => Some(tree.create_owner(key.uid)?),
            None => None,
        };
        // tenant_resource_class: each owner's group gets the class's limits
        if let (Some(group), Some(classes)) = (&cgroup, &self.config.classes) {
            classes.apply_owner_limits(&group.dirs)?;
        }
        let class_group = match (class, &self.config.classes) {
            (Some(name), Some(classes)) => Some(cgroupfs::OwnerGroup { dirs: classes.class_dirs(name) }),
            _ => None,
        };
        let spec = RunnerSpec {
            uid: key.uid,
            gid: key.gid,
            docroot: &key.docroot,
            tmp: &tmp,
            program,
            config: &self.config,
            cgroup: class_group.as_ref().or(cgroup.as_ref()),
        };
        // SAFETY: the supervisor is single-threaded; the child only confines itself and execs.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                let reason = sandbox::confine_and_exec(&spec, listener.as_raw_fd(), pipe_write.as_raw_fd(), self.pid);
                let line = format!("runner setup failed: {reason}\n");
                // SAFETY: writes to our stderr (the log pipe once redirected), then exits.
                unsafe {
                    libc::write(2, line.as_ptr().cast(), line.len());
                    libc::_exit(127)
                }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(listener);
                drop(pipe_write);
                let _ = nix::fcntl::fcntl(
                    pipe_read.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                self.pipes
                    .insert(id, StderrPipe { fd: pipe_read, partial: Vec::new(), pid: child.as_raw(), uid: key.uid });
                log_info!(
                    "supervisor: runner pid {} started for uid {} document root \"{}\" kind {}",
                    child,
                    key.uid,
                    key.docroot.display(),
                    key.kind
                );
                self.table.insert(Runner {
                    id,
                    pid: child.as_raw(),
                    key: key.clone(),
                    socket,
                    lessee: None,
                    requests: 0,
                    last_used: Instant::now(),
                    killing: false,
                    discard_at: None,
                    asked_back: false,
                    busy: false,
                    class: None,
                    class_oom_kills: None,
                });
                Ok(id)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                Err(format!("fork: {e}"))
            }
        }
    }

    /// Kills a runner and every process of its session (what its programs
    /// started: a CGI program's children, a fork bomb).
    fn kill_runner(&mut self, id: u64) {
        if let Some(runner) = self.table.get_mut(id) {
            runner.killing = true;
            let _ = kill(Pid::from_raw(runner.pid), Signal::SIGKILL);
            kill_session(runner.pid);
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, how) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exited with code {code}")),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, format!("killed by {signal}")),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let Some(runner) = self.table.remove_pid(pid.as_raw()) else {
                continue;
            };
            kill_session(runner.pid);
            self.drain_pipe(runner.id);
            self.pipes.remove(&runner.id);
            let _ = std::fs::remove_file(&runner.socket);
            self.release_owner_cgroup(runner.key.uid);
            if let Some(class) = &runner.class {
                // it died in the class (a PHP runner over `memory=` is the one the kernel kills)
                self.log_oom_kills(runner.pid, runner.key.uid, class, runner.class_oom_kills, true);
            } else if !runner.killing {
                self.log_owner_oom_kills(runner.pid, runner.key.uid);
            }
            if runner.killing {
                continue;
            }
            if let Some(client) = runner.lessee {
                // the worker may keep it for its next request: tell it to stop
                self.reply(client, Reply::GiveBack { runner: runner.id });
                let worker = self.clients.get(&client).map_or(0, |c| c.pid);
                log_error!(
                    "supervisor: runner pid {} of uid {} (document root \"{}\") {how} while serving a request \
                     or kept for the next one by worker pid {worker}",
                    runner.pid,
                    runner.key.uid,
                    runner.key.docroot.display()
                );
            } else {
                log_warn!("supervisor: idle runner pid {} of uid {} {how}", runner.pid, runner.key.uid);
            }
        }
    }

    /// The owner's last runner is gone: its groups are emptied and removed
    /// a moment later (once the runner's session, killed just now, is gone).
    fn release_owner_cgroup(&mut self, uid: u32) {
        if self.config.cgroups.is_some() && !self.table.iter().any(|r| r.key.uid == uid) {
            self.cgroup_cleanup.insert(uid, Instant::now() + CGROUP_CLEANUP_DELAY);
        }
    }

    /// Owners whose groups are due: whatever is still in them left its
    /// runner's session (a daemonised CGI child): killed, then the groups go.
    fn clean_owner_cgroups(&mut self, now: Instant) {
        let due: Vec<u32> = self.cgroup_cleanup.iter().filter(|(_, at)| **at <= now).map(|(uid, _)| *uid).collect();
        for uid in due {
            self.cgroup_cleanup.remove(&uid);
            let Some(tree) = &self.config.cgroups else {
                return;
            };
            if self.table.iter().any(|r| r.key.uid == uid) {
                continue;
            }
            let killed = tree.remove_owner(uid);
            // a new group for this owner counts from 0
            self.owner_oom_logged.remove(&uid);
            if killed > 0 {
                log_notice!(
                    "supervisor: killed {killed} process(es) of uid {uid} left in its cgroup outside any runner"
                );
            }
        }
    }

    fn on_pipe(&mut self, id: u64) {
        self.drain_pipe(id);
    }

    /// Logs each complete line a runner wrote on stderr, tagged with its owner.
    fn drain_pipe(&mut self, id: u64) {
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 8192];
        let eof = loop {
            // SAFETY: reads into a local buffer from our own pipe.
            let n = unsafe { libc::read(pipe.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break n == 0;
            }
            pipe.partial.extend_from_slice(&buf[..n as usize]);
        };
        let (uid, pid) = (pipe.uid, pipe.pid);
        let mut lines = Vec::new();
        while let Some(end) = pipe.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pipe.partial.drain(..=end).collect();
            lines.push(line);
        }
        if pipe.partial.len() > 4096 || (eof && !pipe.partial.is_empty()) {
            lines.push(std::mem::take(&mut pipe.partial));
        }
        let now = Instant::now();
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                continue;
            }
            if let Verdict::Log { dropped_before } = self.stderr_budget.line(uid, pid, now) {
                report_dropped(pid, uid, dropped_before);
                log_error!("runner pid {pid} uid {uid}: {text}");
            }
        }
        if eof {
            self.pipes.remove(&id);
            self.stderr_budget.forget_idle(now);
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        for (uid, pid, dropped) in self.stderr_budget.due_reports(now) {
            report_dropped(pid, uid, dropped);
        }
        let mut expired = Vec::new();
        self.queue.retain(|w| {
            if w.deadline <= now {
                expired.push((w.client, w.tag, w.key.uid, w.key.docroot.clone()));
                false
            } else {
                true
            }
        });
        for (client, tag, uid, docroot) in expired {
            let pid = self.clients.get(&client).map_or(0, |c| c.pid);
            log_error!(
                "supervisor: no runner free for uid {uid} document root \"{}\" within tenant_queue_timeout (worker pid {pid})",
                docroot.display()
            );
            self.reply(client, Reply::Err { tag, status: 503, reason: String::from("queue timeout") });
        }
        let discarded: Vec<(u64, i32, u32)> = self
            .table
            .iter()
            .filter(|r| !r.killing && r.discard_at.is_some_and(|at| at <= now))
            .map(|r| (r.id, r.pid, r.key.uid))
            .collect();
        for (id, pid, uid) in discarded {
            log_info!("supervisor: discarding runner pid {pid} of uid {uid}: its request failed or timed out");
            self.kill_runner(id);
        }
        let idle: Vec<(u64, i32, u32)> = self
            .table
            .iter()
            .filter(|r| r.lessee.is_none() && !r.killing && r.last_used + self.config.idle_timeout <= now)
            .map(|r| (r.id, r.pid, r.key.uid))
            .collect();
        for (id, pid, uid) in idle {
            log_info!("supervisor: reaping runner pid {pid} of uid {uid} after tenant_idle_timeout");
            self.kill_runner(id);
        }
        self.clean_owner_cgroups(now);
    }

    fn reply(&mut self, client: ClientId, reply: Reply) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.outbuf.extend_from_slice(&reply.encode());
        }
    }

    fn flush_all(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().filter(|(_, c)| !c.outbuf.is_empty()).map(|(id, _)| *id).collect();
        for id in ids {
            self.flush(id);
        }
    }

    fn flush(&mut self, id: ClientId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        while !client.outbuf.is_empty() {
            match client.stream.write(&client.outbuf) {
                Ok(n) => {
                    client.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_client(id);
                    return;
                }
            }
        }
    }

    /// A worker went away: its requests are over, whatever state their
    /// runners are in, so those runners are killed rather than reused.
    fn drop_client(&mut self, id: ClientId) {
        let Some(client) = self.clients.remove(&id) else {
            return;
        };
        self.queue.retain(|w| w.client != id);
        let held: Vec<(u64, i32, u32)> =
            self.table.iter().filter(|r| r.lessee == Some(id)).map(|r| (r.id, r.pid, r.key.uid)).collect();
        for (runner, pid, uid) in held {
            log_warn!(
                "supervisor: worker pid {} went away holding runner pid {pid} of uid {uid}, killing it",
                client.pid
            );
            if let Some(r) = self.table.get_mut(runner) {
                r.lessee = None;
            }
            self.kill_runner(runner);
        }
    }

    fn shutdown(&mut self) -> ! {
        let ids: Vec<u64> = self.table.iter().map(|r| r.id).collect();
        for id in ids {
            self.kill_runner(id);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.table.len() > 0 && Instant::now() < deadline {
            match waitpid(None, None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        if let Some(r) = self.table.remove_pid(pid.as_raw()) {
                            let _ = std::fs::remove_file(&r.socket);
                        }
                    }
                }
                Err(_) => break,
            }
        }
        let _ = std::fs::remove_file(self.config.socket_dir().join(SOCKET_NAME));
        std::process::exit(0)
    }
}

/// The session id and state of a process, from `/proc/<pid>/stat`.
fn session_and_state(pid: &str) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // after "pid (comm)": state ppid pgrp session
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.nth(2)?.parse().ok()?, state))
}

/// Live processes of session `sid`, with whether each is stopped.
fn session_members(sid: i32) -> Vec<(i32, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|name| match session_and_state(&name) {
            Some((s, state)) if s == sid && state != 'Z' && state != 'X' => {
                Some((name.parse().ok()?, state == 'T' || state == 't'))
            }
            _ => None,
        })
        .collect()
}

/// Kills every process whose session is `sid` (a runner calls setsid, so
/// its session is its pid). A fork bomb forks while it is being killed, so
/// the session is frozen first (SIGSTOP until a scan finds nothing still
/// running; stopped processes cannot fork), then killed.
fn kill_session(sid: i32) {
    match session_members(sid).as_slice() {
        [] => return,
        // the runner alone (the usual case: an idle runner): one scan is
        // enough, since reap() sweeps its session again once it is dead
        [(pid, _)] if *pid == sid => {
            let _ = kill(Pid::from_raw(sid), Signal::SIGKILL);
            return;
        }
        _ => {}
    }
    for _ in 0..100 {
        let members = session_members(sid);
        if members.iter().all(|(_, stopped)| *stopped) {
            break;
        }
        for (pid, _) in members {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
    }
    for (pid, _) in session_members(sid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// One line for the stderr lines of `uid` the rate limit dropped.
fn report_dropped(pid: i32, uid: u32, dropped: u64) {
    if dropped > 0 {
        log_error!(
            "runner pid {pid} uid {uid}: {dropped} stderr line(s) of uid {uid} not logged: over {} lines per second (burst {})",
            stderr_budget::LINES_PER_SECOND,
            stderr_budget::BURST
        );
    }
}
