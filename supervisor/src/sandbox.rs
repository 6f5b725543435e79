//! Confining a runner: what the forked child does, in this order, before it
//! execs anything (issue 9's list): enter the owner's cgroups (when
//! `tenant_cgroup` is set), clear supplementary groups, set real,
//! effective and saved gid and uid to the owner's, set `no_new_privs`, drop
//! every capability (the bounding set first, while CAP_SETPCAP is still
//! held: after the uid switch nothing could drop it), apply a Landlock
//! ruleset, close every descriptor but 0-2, then exec.
//!
//! Every step is checked; a runner that cannot be confined fully never
//! execs (it writes why on its stderr, which the supervisor logs).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::CapSet;
use landlock::{
    Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{setresgid, setresuid, Gid, Uid};

use crate::config::{Config, RunnerProgram};
use cgroupfs::OwnerGroup;

/// Read-only paths every runner needs to load its program (shared
/// libraries, the interpreter's own files, time zones). Nothing under
/// `/etc` beyond these: no `/etc/passwd`, no other site's files.
const RUNTIME_READ: &[&str] =
    &["/usr", "/lib", "/lib64", "/lib32", "/etc/php", "/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"];

/// Devices a runner may open: read (and write for `/dev/null`).
const DEVICES_READ: &[&str] = &["/dev/urandom", "/dev/random", "/dev/zero"];

/// One runner to create.
pub struct RunnerSpec<'a> {
    pub uid: u32,
    pub gid: u32,
    pub docroot: &'a Path,
    /// The owner's private temporary directory (read-write, `TMPDIR`).
    pub tmp: &'a Path,
    pub program: &'a RunnerProgram,
    pub config: &'a Config,
    /// The owner's cgroups (`tenant_cgroup`), entered first.
    pub cgroup: Option<&'a OwnerGroup>,
}

/// Runs in the forked child. Returns only the reason it could not finish.
pub fn confine_and_exec(spec: &RunnerSpec, listen_fd: i32, stderr_fd: i32, supervisor_pid: i32) -> String {
    match confine(spec, listen_fd, stderr_fd, supervisor_pid) {
        Ok(()) => exec(spec),
        Err(reason) => reason,
    }
}

fn confine(spec: &RunnerSpec, listen_fd: i32, stderr_fd: i32, supervisor_pid: i32) -> Result<(), String> {
    // while still root: the group's files are root's, so afterwards it cannot move
    if let Some(group) = spec.cgroup {
        group.enter(0)?;
    }
    reset_signals();
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    redirect_stdio(listen_fd, stderr_fd)?;

    // capabilities first from the bounding set: needs CAP_SETPCAP, gone after setresuid
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
    }
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let (gid, uid) = (Gid::from_raw(spec.gid), Uid::from_raw(spec.uid));
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid({}): {e}", spec.gid))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setresuid({}): {e}", spec.uid))?;

    // the parent-death signal is cleared by a credential change, so set it after
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(String::from("PR_SET_PDEATHSIG failed"));
    }
    if nix::unistd::getppid().as_raw() != supervisor_pid {
        return Err(String::from("supervisor exited while the runner started"));
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(String::from("PR_SET_NO_NEW_PRIVS failed"));
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient] {
        caps::clear(None, set).map_err(|e| format!("clearing {set:?} capabilities: {e}"))?;
        if !caps::read(None, set).map_err(|e| format!("reading {set:?}: {e}"))?.is_empty() {
            return Err(format!("{set:?} capabilities still held"));
        }
    }
    set_limits(spec.config)?;
    landlock(spec)?;
    close_other_fds()?;
    std::env::set_current_dir(spec.docroot).map_err(|e| format!("chdir {}: {e}", spec.docroot.display()))?;
    Ok(())
}

/// Signals blocked or ignored by the supervisor would stay so across exec.
fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if signal != Signal::SIGKILL && signal != Signal::SIGSTOP {
            // SAFETY: installs the default disposition; no handler code runs.
            let _ = unsafe { sigaction(signal, &default) };
        }
    }
    let _ = SigSet::all().thread_unblock();
}

/// fd 0: the listening socket (FastCGI's convention); 1: /dev/null; 2: the log pipe.
fn redirect_stdio(listen_fd: i32, stderr_fd: i32) -> Result<(), String> {
    let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("open /dev/null: {e}"))?;
    for (from, to) in [(listen_fd, 0), (null, 1), (stderr_fd, 2)] {
        if from != to {
            nix::unistd::dup2(from, to).map_err(|e| format!("dup2 {from} -> {to}: {e}"))?;
        } else {
            // dup2 onto itself keeps CLOEXEC: clear it by hand
            nix::fcntl::fcntl(to, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                .map_err(|e| format!("fcntl {to}: {e}"))?;
        }
    }
    Ok(())
}

fn set_limits(config: &Config) -> Result<(), String> {
    setrlimit(Resource::RLIMIT_NPROC, config.max_processes, config.max_processes)
        .map_err(|e| format!("RLIMIT_NPROC: {e}"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    if config.max_memory > 0 {
        setrlimit(Resource::RLIMIT_AS, config.max_memory, config.max_memory).map_err(|e| format!("RLIMIT_AS: {e}"))?;
    }
    Ok(())
}

fn add_rule(
    ruleset: landlock::RulesetCreated,
    path: &Path,
    access: landlock::BitFlags<AccessFs>,
    abi: ABI,
) -> Result<landlock::RulesetCreated, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(ruleset); // absent runtime paths (e.g. /lib32) need no rule
    };
    // rights that only apply to directories are refused on a file
    let access = if meta.is_dir() { access } else { access & AccessFs::from_file(abi) };
    let fd = PathFd::new(path).map_err(|e| format!("landlock: {}: {e}", path.display()))?;
    ruleset.add_rule(PathBeneath::new(fd, access)).map_err(|e| format!("landlock rule {}: {e}", path.display()))
}

/// Reads under the document root (executes too, for CGI programs), writes
/// only where `tenant_writable` says, reads the runtime paths; signals and
/// abstract unix sockets are scoped to the runner's own domain.
fn landlock(spec: &RunnerSpec) -> Result<(), String> {
    let abi = ABI::V5;
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(ABI::V6))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let run = read | AccessFs::Execute;
    // CGI programs are executed from the document root; scripts only read
    let docroot_access = match spec.program {
        RunnerProgram::Cgi => run,
        RunnerProgram::FastCgi(_) | RunnerProgram::Ruby => read,
    };
    ruleset = add_rule(ruleset, spec.docroot, docroot_access, abi)?;
    ruleset = add_rule(ruleset, spec.tmp, read | AccessFs::from_write(abi), abi)?;
    for relative in &spec.config.writable {
        let path: PathBuf = spec.docroot.join(relative);
        ruleset = add_rule(ruleset, &path, read | AccessFs::from_write(abi), abi)?;
    }
    for path in RUNTIME_READ {
        ruleset = add_rule(ruleset, Path::new(path), run, abi)?;
    }
    for path in DEVICES_READ {
        ruleset = add_rule(ruleset, Path::new(path), AccessFs::ReadFile.into(), abi)?;
    }
    ruleset = add_rule(ruleset, Path::new("/dev/null"), AccessFs::ReadFile | AccessFs::WriteFile, abi)?;
    let program = match spec.program {
        RunnerProgram::FastCgi(program) => program,
        RunnerProgram::Cgi | RunnerProgram::Ruby => &spec.config.self_exe,
    };
    ruleset = add_rule(ruleset, program, run, abi)?;
    let status = ruleset.restrict_self().map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(String::from("landlock is not supported by this kernel: refusing to run unconfined"));
    }
    Ok(())
}

fn close_other_fds() -> Result<(), String> {
    // SAFETY: close_range only closes this process's descriptors from 3 up.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(format!("close_range: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn cstring(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| String::from("NUL in an exec argument"))
}

/// The environment a runner starts with: nothing inherited.
fn environment(spec: &RunnerSpec) -> Result<Vec<CString>, String> {
    let mut env = vec![cstring(b"PATH=/usr/local/bin:/usr/bin:/bin")?];
    env.push(cstring(format!("TENANT_UID={}", spec.uid).as_bytes())?);
    let mut tmpdir = b"TMPDIR=".to_vec();
    tmpdir.extend_from_slice(spec.tmp.as_os_str().as_bytes());
    env.push(cstring(&tmpdir)?);
    if let RunnerProgram::FastCgi(_) = spec.program {
        // one process serving one request at a time; the supervisor recycles it
        env.push(cstring(b"PHP_FCGI_CHILDREN=0")?);
        env.push(cstring(b"PHP_FCGI_MAX_REQUESTS=0")?);
    }
    Ok(env)
}

/// PHP writes its lock, session, upload and temporary files under `/tmp`
/// (or `/var/lib/php`) unless told: point them at the owner's own directory.
fn php_settings(program: &Path, tmp: &Path) -> Result<Vec<CString>, String> {
    let name = program.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    if !name.starts_with(b"php") {
        return Ok(Vec::new());
    }
    let tmp = tmp.to_string_lossy();
    let mut args = Vec::new();
    for setting in ["opcache.lockfile_path", "sys_temp_dir", "upload_tmp_dir", "session.save_path"] {
        args.push(cstring(b"-d")?);
        args.push(cstring(format!("{setting}={tmp}").as_bytes())?);
    }
    Ok(args)
}

fn exec(spec: &RunnerSpec) -> String {
    let result = (|| -> Result<std::convert::Infallible, String> {
        let env = environment(spec)?;
        let argv = match spec.program {
            RunnerProgram::FastCgi(program) => {
                let mut argv = vec![cstring(program.as_os_str().as_bytes())?];
                argv.extend(php_settings(program, spec.tmp)?);
                argv
            }
            RunnerProgram::Cgi | RunnerProgram::Ruby => vec![
                cstring(spec.config.self_exe.as_os_str().as_bytes())?,
                cstring(if *spec.program == RunnerProgram::Cgi { b"cgi-runner" } else { b"ruby-runner" })?,
                cstring(spec.docroot.as_os_str().as_bytes())?,
            ],
        };
        let program = argv[0].clone();
        nix::unistd::execve(&program, &argv, &env).map_err(|e| format!("exec {}: {e}", program.to_string_lossy()))
    })();
    match result {
        Err(reason) => reason,
        Ok(never) => match never {},
    }
}
