//! Starting the supervisor from the master, and confining the workers.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ngx::ffi::*;

use super::conf::MainConf;

/// The running configuration's supervisor, as the master and (after fork)
/// each worker see it.
struct Generation {
    /// The life pipe's write end: the supervisor stops when every copy is closed.
    _life: OwnedFd,
    socket: PathBuf,
}

static CURRENT: Mutex<Option<Generation>> = Mutex::new(None);
static STARTS: Mutex<u32> = Mutex::new(0);

/// Where this worker reaches its supervisor.
pub fn supervisor_socket() -> Option<PathBuf> {
    CURRENT.lock().ok()?.as_ref().map(|g| g.socket.clone())
}

/// A configuration without tenants: the previous supervisor stops once the
/// old workers are gone.
pub fn retire_previous() {
    if let Ok(mut current) = CURRENT.lock() {
        *current = None;
    }
}

fn core_conf(cycle: &ngx_cycle_t) -> &ngx_core_conf_t {
    // SAFETY: the core module's conf exists in every cycle; ngx_get_conf is this index lookup.
    unsafe {
        let index = (*core::ptr::addr_of!(ngx_core_module)).index;
        &*(*cycle.conf_ctx.add(index) as *const ngx_core_conf_t)
    }
}

/// How the supervisor finds this nginx's master (only its children may
/// connect): its pid when this process is, or will stay, the master; the
/// pid file when nginx is about to fork the master into the background
/// (the first start with `daemon on`), written before any worker exists.
fn master_options(ccf: &ngx_core_conf_t) -> [String; 2] {
    // SAFETY: plain reads of nginx globals set before configuration.
    let (process, inherited) = unsafe { (ngx_process, ngx_inherited) };
    let daemonizing = process == NGX_PROCESS_SINGLE as ngx_uint_t && ccf.daemon != 0 && inherited == 0;
    if daemonizing {
        ["--master-pid-file".into(), crate::ngx_util::str_lossy(&ccf.pid)]
    } else {
        ["--master-pid".into(), std::process::id().to_string()]
    }
}

/// The supervisor's options, from the `tenant_*` settings.
fn options(main: &MainConf, dir: &std::path::Path, uid: u32, gid: u32) -> Vec<String> {
    let mut opts = vec![
        "--dir".into(),
        dir.display().to_string(),
        "--worker-uid".into(),
        uid.to_string(),
        "--worker-gid".into(),
        gid.to_string(),
        "--min-uid".into(),
        main.min_uid().to_string(),
        "--min-gid".into(),
        main.min_gid().to_string(),
        "--max-runners".into(),
        main.max_runners().to_string(),
        "--max-per-owner".into(),
        main.max_per_owner().to_string(),
        "--max-requests".into(),
        main.max_requests().to_string(),
        "--idle-timeout-ms".into(),
        main.idle_timeout_ms().to_string(),
        "--queue-timeout-ms".into(),
        main.queue_timeout_ms().to_string(),
        "--max-processes".into(),
        main.max_processes().to_string(),
        "--max-memory".into(),
        main.max_memory().to_string(),
    ];
    for (ext, program) in &main.interpreters {
        opts.push("--interpreter".into());
        opts.push(format!("{ext}={program}"));
    }
    for path in &main.writable {
        opts.push("--writable".into());
        opts.push(path.clone());
    }
    if let Some(path) = &main.cgroup {
        opts.push("--cgroup".into());
        opts.push(path.clone());
    }
    opts
}

/// The `resource_*` settings the supervisor enforces (issue 10): the
/// classes' sub-tree, each class's limits, the class of owners' groups.
/// Without `resource_cgroup_root` there are no classes to create.
fn resource_options(cycle: &ngx_cycle_t) -> Vec<String> {
    use ngx::http::HttpModuleMainConf;
    let Some(resources) = crate::resources::HttpResourcesModule::main_conf(cycle) else {
        return Vec::new();
    };
    let Some(root) = &resources.cgroup_root else {
        return Vec::new();
    };
    let mut opts = vec!["--resource-root".to_string(), root.clone()];
    for class in &resources.classes {
        opts.push("--resource-class".into());
        opts.push(format!("{} {}", class.name, class.describe()));
    }
    if let Some(name) = &resources.tenant_class {
        opts.push("--tenant-class".into());
        opts.push(name.clone());
    }
    opts
}

/// The cycle's error log file name, when it is a file (the supervisor
/// follows it across `nginx -s reopen`).
fn error_log_path(cycle: &ngx_cycle_t) -> Option<String> {
    // SAFETY: the cycle's log is live; ngx_log_get_file_log returns its first file log.
    let name = unsafe {
        let file_log = ngx_log_get_file_log(cycle.log);
        if file_log.is_null() || (*file_log).file.is_null() {
            return None;
        }
        (*(*file_log).file).name
    };
    let path = crate::ngx_util::str_lossy(&name);
    // "stderr" has no name; a relative one would not be found by the supervisor
    path.starts_with('/').then_some(path)
}

/// A copy of the cycle's error log descriptor: the supervisor's stderr.
/// (Not the master's own stderr: at the first start that is still the
/// terminal or pipe nginx was launched from.)
fn error_log_fd(cycle: &ngx_cycle_t) -> Result<OwnedFd, String> {
    // SAFETY: the cycle's log is live; ngx_log_get_file_log returns its first file log.
    let fd = unsafe {
        let file_log = ngx_log_get_file_log(cycle.log);
        if file_log.is_null() || (*file_log).file.is_null() {
            return Err(String::from("no error log to give the supervisor"));
        }
        (*(*file_log).file).fd
    };
    // SAFETY: fd is nginx's open log file; we only duplicate it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().map_err(|e| format!("cannot duplicate the error log descriptor: {e}"))
}

/// Execs the supervisor for this configuration (in the master). The
/// program gets fds 0-2 (null, null, the error log) and the life pipe as
/// fd 3; nothing else survives the exec, and none of the master's memory
/// does.
pub fn start_supervisor(cycle: &ngx_cycle_t, main: &MainConf) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(String::from("nginx's master must run as root to start runners as other users"));
    }
    let ccf = core_conf(cycle);
    if ccf.master == 0 {
        return Err(String::from("needs \"master_process on\""));
    }
    let (uid, gid) = (ccf.user, ccf.group);
    if uid == 0 || uid == ngx_uid_t::MAX || gid == 0 {
        return Err(String::from("needs a worker user and group other than root (the \"user\" directive)"));
    }
    let generation = {
        let mut starts = STARTS.lock().map_err(|_| "poisoned lock")?;
        *starts += 1;
        *starts
    };
    let dir = PathBuf::from(main.socket_dir()).join(format!("{}.{generation}", std::process::id()));
    let (life_read, life_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))?;
    let read_fd = life_read.as_raw_fd();
    let log_fd = error_log_fd(cycle)?;
    let program = crate::shared_conf::supervisor_program_of(cycle);
    let mut command = Command::new(&program);
    command
        .arg("keeper")
        .args(options(main, &dir, uid, gid))
        .args(resource_options(cycle))
        .args(master_options(ccf))
        .args(error_log_path(cycle).map(|path| ["--error-log".to_string(), path]).into_iter().flatten())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_fd));
    // SAFETY: runs between fork and exec; only async-signal-safe calls (dup2, fcntl, close_range).
    unsafe {
        command.pre_exec(move || {
            if read_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(read_fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = command.status().map_err(|e| format!("cannot start the supervisor \"{}\": {e}", program.display()))?;
    if !status.success() {
        return Err(format!("the supervisor \"{}\" failed to start ({status})", program.display()));
    }
    drop(life_read);
    let socket = dir.join("sockets").join("supervisor.sock");
    let mut current = CURRENT.lock().map_err(|_| "poisoned lock")?;
    // the previous generation's write end closes here: its supervisor ends with the old workers
    *current = Some(Generation { _life: life_write, socket });
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// In a worker: no capability in any set, and none can ever be gained
/// (`no_new_privs`: a hijacked worker cannot exec a setuid program).
pub fn confine_worker() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
        return Err(String::from("worker runs as root"));
    }
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: capset with a v3 header and two zeroed data structs; dropping is always allowed.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(String::from("PR_SET_NO_NEW_PRIVS failed"));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    for field in ["CapPrm:", "CapEff:", "CapAmb:"] {
        let value = status.lines().find_map(|l| l.strip_prefix(field)).map(str::trim);
        if value.is_some_and(|v| v.bytes().any(|b| b != b'0')) {
            return Err(format!("worker still holds capabilities ({field} {})", value.unwrap_or("")));
        }
    }
    Ok(())
}
