//! Directives of the tenant runners. `tenant_runner` and `tenant_cgi` are
//! per location; everything the supervisor enforces is set once per
//! `http{}` (the supervisor takes its rules from the master, never from a
//! worker).

use core::ffi::{c_char, c_void};
use core::ptr;
use std::path::Path;

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::ngx_string;

use super::HttpTenantsModule;
use crate::conf::{args, conf_result};
use crate::ngx_util::{conf_log, str_bytes, str_lossy};

/// Where runner sockets live when `tenant_socket_dir` is not set.
pub const DEFAULT_SOCKET_DIR: &str = "/run/ngx-mruby-tenants";

/// `http{}`-level settings (what the supervisor enforces).
#[derive(Default)]
pub struct MainConf {
    /// Some location has `tenant_runner on`.
    pub used: bool,
    /// `tenant_interpreter <ext> <program>`, in order.
    pub interpreters: Vec<(String, String)>,
    /// `tenant_writable`: paths below the document root.
    pub writable: Vec<String>,
    pub min_uid: Option<u32>,
    pub min_gid: Option<u32>,
    pub max_runners: Option<u64>,
    pub max_per_owner: Option<u64>,
    pub max_requests: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub queue_timeout_ms: Option<u64>,
    pub max_processes: Option<u64>,
    pub max_memory: Option<u64>,
    pub socket_dir: Option<String>,
    /// `tenant_cgroup`: the cgroup sub-tree runners are placed in.
    pub cgroup: Option<String>,
}

impl MainConf {
    pub fn min_uid(&self) -> u32 {
        self.min_uid.unwrap_or(1000)
    }
    pub fn min_gid(&self) -> u32 {
        self.min_gid.unwrap_or(1000)
    }
    pub fn max_runners(&self) -> u64 {
        self.max_runners.unwrap_or(64)
    }
    pub fn max_per_owner(&self) -> u64 {
        self.max_per_owner.unwrap_or(4)
    }
    pub fn max_requests(&self) -> u64 {
        self.max_requests.unwrap_or(1000)
    }
    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms.unwrap_or(60_000)
    }
    pub fn queue_timeout_ms(&self) -> u64 {
        self.queue_timeout_ms.unwrap_or(5_000)
    }
    pub fn max_processes(&self) -> u64 {
        self.max_processes.unwrap_or(64)
    }
    pub fn max_memory(&self) -> u64 {
        self.max_memory.unwrap_or(0)
    }
    pub fn socket_dir(&self) -> &str {
        self.socket_dir.as_deref().unwrap_or(DEFAULT_SOCKET_DIR)
    }

    /// The kind of runner for a script path: the first interpreter whose
    /// extension ends the path.
    pub fn interpreter_kind(&self, path: &[u8]) -> Option<&str> {
        self.interpreters.iter().find(|(ext, _)| path.ends_with(ext.as_bytes())).map(|(ext, _)| ext.as_str())
    }
}

/// Location-level settings.
#[derive(Default)]
pub struct LocConf {
    /// `tenant_runner on|off`.
    pub runner: Option<bool>,
    /// `tenant_cgi on|off`: scripts here are CGI programs.
    pub cgi: Option<bool>,
    /// `mruby_add_handler on` under `tenant_runner on`: requested files
    /// that no `tenant_interpreter` claims are Ruby scripts, run in the
    /// owner's Ruby runner (set when merging, from the mruby module's conf).
    pub ruby: bool,
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), MergeConfigError> {
        self.runner = self.runner.or(prev.runner);
        self.cgi = self.cgi.or(prev.cgi);
        Ok(())
    }
}

/// After merging a location (or a server's default location): with
/// `tenant_runner on`, `mruby_add_handler on` means "run the requested
/// file in its owner's Ruby runner", never in the worker's shared VM. The
/// runner is reached through nginx's FastCGI client, so the location must
/// pass to it; nginx gives a location's content handler (`fastcgi_pass`)
/// precedence over the mruby content phase, which then never runs there.
pub(super) fn check_location(cf: &ngx_conf_t, loc: &mut LocConf) -> Result<(), String> {
    let add_handler = crate::HttpMrubyModule::location_conf(cf).and_then(|m| m.add_handler) == Some(true);
    loc.ruby = loc.runner == Some(true) && add_handler;
    if !loc.ruby {
        return Ok(());
    }
    let clcf = NgxHttpCoreModule::location_conf(cf).ok_or("tenant_runner: no core location conf")?;
    let place = if clcf.name.len == 0 {
        String::from("in a server{} block (outside any location)")
    } else {
        format!("in location \"{}\"", str_lossy(&clcf.name))
    };
    if loc.cgi == Some(true) {
        return Err(format!(
            "\"mruby_add_handler on\" and \"tenant_cgi on\" both apply {place}: scripts there are either Ruby or CGI programs"
        ));
    }
    // `if` and `limit_except` blocks (noname) keep their location's handler
    if clcf.handler.is_none() && clcf.noname() == 0 {
        return Err(format!(
            "\"mruby_add_handler on\" with \"tenant_runner on\" {place} runs the script in its owner's Ruby runner, \
             which needs \"fastcgi_pass unix:$tenant_socket;\" there (the worker's own VM never runs tenant scripts)"
        ));
    }
    Ok(())
}

fn main_conf(cf: &ngx_conf_t) -> Result<&'static mut MainConf, String> {
    HttpTenantsModule::main_conf_mut(cf).ok_or_else(|| String::from("tenant_runner: no http main conf"))
}

/// Which directive a setter is parsing (carried in `offset`).
#[derive(Clone, Copy)]
#[repr(usize)]
enum Setting {
    Runner,
    Cgi,
    MinUid,
    MinGid,
    MaxRunners,
    MaxPerOwner,
    MaxRequests,
    IdleTimeout,
    QueueTimeout,
    MaxProcesses,
    MaxMemory,
    SocketDir,
    Supervisor,
    Cgroup,
}

impl Setting {
    const ALL: [Setting; 14] = [
        Setting::Runner,
        Setting::Cgi,
        Setting::MinUid,
        Setting::MinGid,
        Setting::MaxRunners,
        Setting::MaxPerOwner,
        Setting::MaxRequests,
        Setting::IdleTimeout,
        Setting::QueueTimeout,
        Setting::MaxProcesses,
        Setting::MaxMemory,
        Setting::SocketDir,
        Setting::Supervisor,
        Setting::Cgroup,
    ];
}

fn duplicate<T>(slot: &Option<T>, name: &str) -> Result<(), String> {
    match slot {
        Some(_) => Err(format!("\"{name}\" directive is duplicate")),
        None => Ok(()),
    }
}

fn parse_number(name: &str, arg: &ngx_str_t, min: u64, max: u64) -> Result<u64, String> {
    let text = str_lossy(arg);
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("invalid value \"{text}\" in \"{name}\" directive, it must be a number from {min} to {max}")),
    }
}

fn parse_msec(name: &str, arg: &ngx_str_t) -> Result<u64, String> {
    let mut value = *arg;
    // SAFETY: ngx_parse_time only reads the argument's bytes.
    let ms = unsafe { ngx_parse_time(&mut value, 0) };
    if ms == NGX_ERROR as ngx_int_t || ms <= 0 {
        return Err(format!("invalid value \"{}\" in \"{name}\" directive, it must be a time", str_lossy(arg)));
    }
    Ok(ms as u64)
}

fn parse_flag(name: &str, arg: &ngx_str_t) -> Result<bool, String> {
    match str_bytes(arg).to_ascii_lowercase().as_slice() {
        b"on" => Ok(true),
        b"off" => Ok(false),
        _ => Err(format!("invalid value \"{}\" in \"{name}\" directive, it must be \"on\" or \"off\"", str_lossy(arg))),
    }
}

fn set_setting(cf: &mut ngx_conf_t, cmd: &ngx_command_t, loc: &mut LocConf) -> Result<(), String> {
    let name = str_lossy(&cmd.name);
    let arg = &args(cf)[0];
    let setting = Setting::ALL.get(cmd.offset).copied().ok_or("tenant_runner: bad directive selector")?;
    if let Setting::Runner | Setting::Cgi = setting {
        let slot = if let Setting::Runner = setting { &mut loc.runner } else { &mut loc.cgi };
        duplicate(slot, &name)?;
        let on = parse_flag(&name, arg)?;
        *slot = Some(on);
        if on {
            main_conf(cf)?.used = true;
        }
        return Ok(());
    }
    let main = main_conf(cf)?;
    match setting {
        Setting::MinUid => {
            duplicate(&main.min_uid, &name)?;
            main.min_uid = Some(parse_number(&name, arg, 1, u32::MAX as u64 - 1)? as u32);
        }
        Setting::MinGid => {
            duplicate(&main.min_gid, &name)?;
            main.min_gid = Some(parse_number(&name, arg, 1, u32::MAX as u64 - 1)? as u32);
        }
        Setting::MaxRunners => {
            duplicate(&main.max_runners, &name)?;
            main.max_runners = Some(parse_number(&name, arg, 1, 100_000)?);
        }
        Setting::MaxPerOwner => {
            duplicate(&main.max_per_owner, &name)?;
            main.max_per_owner = Some(parse_number(&name, arg, 1, 10_000)?);
        }
        Setting::MaxRequests => {
            duplicate(&main.max_requests, &name)?;
            main.max_requests = Some(parse_number(&name, arg, 0, u32::MAX as u64)?);
        }
        Setting::IdleTimeout => {
            duplicate(&main.idle_timeout_ms, &name)?;
            main.idle_timeout_ms = Some(parse_msec(&name, arg)?);
        }
        Setting::QueueTimeout => {
            duplicate(&main.queue_timeout_ms, &name)?;
            main.queue_timeout_ms = Some(parse_msec(&name, arg)?);
        }
        Setting::MaxProcesses => {
            duplicate(&main.max_processes, &name)?;
            main.max_processes = Some(parse_number(&name, arg, 1, 1_000_000)?);
        }
        Setting::MaxMemory => {
            duplicate(&main.max_memory, &name)?;
            let mut value = *arg;
            // SAFETY: ngx_parse_offset only reads the argument's bytes.
            let size = unsafe { ngx_parse_offset(&mut value) };
            if size <= 0 {
                return Err(format!("invalid value \"{}\" in \"{name}\" directive, it must be a size", str_lossy(arg)));
            }
            main.max_memory = Some(size as u64);
        }
        Setting::SocketDir | Setting::Supervisor => {
            let path = str_lossy(arg);
            if !path.starts_with('/') || path.len() > 60 {
                return Err(format!("\"{name}\" needs an absolute path of at most 60 bytes, not \"{path}\""));
            }
            let path = path.trim_end_matches('/').to_string();
            if let Setting::Supervisor = setting {
                // read by resource control too: kept in the shared conf
                return crate::shared_conf::set_supervisor_program(cf, path);
            }
            duplicate(&main.socket_dir, &name)?;
            main.socket_dir = Some(path);
        }
        Setting::Cgroup => {
            duplicate(&main.cgroup, &name)?;
            // the supervisor checks the rest (`check_main`): one parser for the path
            let path = str_lossy(arg);
            if path.is_empty() || path.len() > 200 || path.chars().any(|c| c.is_control() || c == ' ') {
                return Err(format!("invalid value \"{path}\" in \"{name}\" directive, it must be a cgroup path"));
            }
            crate::shared_conf::set_tenant_cgroup(cf, path.clone())?;
            main.cgroup = Some(path);
        }
        Setting::Runner | Setting::Cgi => {}
    }
    Ok(())
}

extern "C" fn set_directive(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command and our LocConf (LOC_CONF_OFFSET).
    let (cf_ref, cmd, loc) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_setting(cf_ref, cmd, loc))
}

/// `tenant_interpreter <.ext> <absolute program>`.
fn set_interpreter(cf: &mut ngx_conf_t) -> Result<(), String> {
    let a = args(cf);
    let ext = str_lossy(&a[0]);
    let program = str_lossy(&a[1]);
    let ext_ok = ext.len() >= 2
        && ext.len() <= 16
        && ext.starts_with('.')
        && ext[1..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ext_ok {
        return Err(format!("tenant_interpreter: invalid extension \"{ext}\", it must look like \".php\""));
    }
    if !program.starts_with('/') || program.contains('=') {
        return Err(format!("tenant_interpreter: \"{program}\" must be an absolute path"));
    }
    let main = main_conf(cf)?;
    if main.interpreters.iter().any(|(e, _)| *e == ext) {
        return Err(format!("tenant_interpreter: extension \"{ext}\" is duplicate"));
    }
    main.interpreters.push((ext, program));
    Ok(())
}

extern "C" fn set_interpreter_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the live cf.
    conf_result(cf, set_interpreter(unsafe { &mut *cf }))
}

/// `tenant_writable <path below the document root>...`.
fn set_writable(cf: &mut ngx_conf_t) -> Result<(), String> {
    let paths: Vec<String> = args(cf).iter().map(str_lossy).collect();
    let main = main_conf(cf)?;
    for path in paths {
        let bad = path.is_empty()
            || path.starts_with('/')
            || path.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            || path.chars().any(|c| c.is_control());
        if bad {
            return Err(format!(
                "tenant_writable: invalid path \"{path}\", it must be relative to the document root, without \"..\""
            ));
        }
        main.writable.push(path);
    }
    Ok(())
}

extern "C" fn set_writable_directive(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf.
    conf_result(cf, set_writable(unsafe { &mut *cf }))
}

/// Checks what can only be checked once `http{}` is parsed (at `nginx -t` too).
pub(super) fn check_main(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let Some(main) = HttpTenantsModule::main_conf(cf) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    let supervisor = crate::shared_conf::supervisor_program(cf);
    if !is_executable(&supervisor) {
        problems.push(format!(
            "tenant_runner: the supervisor program \"{}\" is not an executable file (see tenant_supervisor)",
            supervisor.display()
        ));
    }
    for (ext, program) in &main.interpreters {
        if !is_executable(Path::new(program)) {
            problems.push(format!("tenant_interpreter {ext}: \"{program}\" is not an executable file"));
        }
    }
    if let (Some(path), true) = (&main.cgroup, problems.is_empty()) {
        if let Err(message) = check_cgroup(&supervisor, path) {
            problems.push(format!("tenant_cgroup \"{path}\": {message}"));
        }
    }
    for message in &problems {
        conf_log(cf, NGX_LOG_EMERG, message);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(())
    }
}

/// Asks the supervisor program whether `path` can hold runners here (it
/// detects cgroup v1 or v2 and checks the parent group): the same code
/// that creates the groups at start judges the path at `nginx -t`.
fn check_cgroup(supervisor: &Path, path: &str) -> Result<(), String> {
    let output = crate::ngx_util::run_check_cgroup(supervisor, path)
        .map_err(|e| format!("cannot run \"{}\": {e}", supervisor.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() {
        Ok(())
    } else if text.is_empty() {
        Err(format!("\"{} check-cgroup\" failed ({})", supervisor.display(), output.status))
    } else {
        Err(text)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

const HTTP: u32 = NGX_HTTP_MAIN_CONF;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const LOC_OFF: ngx_uint_t = NGX_HTTP_LOC_CONF_OFFSET as ngx_uint_t;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, kind: u32, set: SetFn, setting: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: kind as ngx_uint_t,
        set: Some(set),
        conf: LOC_OFF,
        offset: setting,
        post: ptr::null_mut(),
    }
}

const T1: u32 = NGX_CONF_TAKE1;

/// The directive table. `offset` carries the `Setting`, not a struct offset.
pub static mut COMMANDS: [ngx_command_t; 17] = [
    command(ngx_string!("tenant_runner"), ANY | NGX_CONF_FLAG, set_directive, Setting::Runner as _),
    command(ngx_string!("tenant_cgi"), ANY | NGX_CONF_FLAG, set_directive, Setting::Cgi as _),
    command(ngx_string!("tenant_interpreter"), HTTP | NGX_CONF_TAKE2, set_interpreter_directive, 0),
    command(ngx_string!("tenant_writable"), HTTP | NGX_CONF_1MORE, set_writable_directive, 0),
    command(ngx_string!("tenant_min_uid"), HTTP | T1, set_directive, Setting::MinUid as _),
    command(ngx_string!("tenant_min_gid"), HTTP | T1, set_directive, Setting::MinGid as _),
    command(ngx_string!("tenant_max_runners"), HTTP | T1, set_directive, Setting::MaxRunners as _),
    command(ngx_string!("tenant_max_runners_per_owner"), HTTP | T1, set_directive, Setting::MaxPerOwner as _),
    command(ngx_string!("tenant_max_requests"), HTTP | T1, set_directive, Setting::MaxRequests as _),
    command(ngx_string!("tenant_idle_timeout"), HTTP | T1, set_directive, Setting::IdleTimeout as _),
    command(ngx_string!("tenant_queue_timeout"), HTTP | T1, set_directive, Setting::QueueTimeout as _),
    command(ngx_string!("tenant_max_processes"), HTTP | T1, set_directive, Setting::MaxProcesses as _),
    command(ngx_string!("tenant_max_memory"), HTTP | T1, set_directive, Setting::MaxMemory as _),
    command(ngx_string!("tenant_socket_dir"), HTTP | T1, set_directive, Setting::SocketDir as _),
    command(ngx_string!("tenant_supervisor"), HTTP | T1, set_directive, Setting::Supervisor as _),
    command(ngx_string!("tenant_cgroup"), HTTP | T1, set_directive, Setting::Cgroup as _),
    ngx_command_t::empty(),
];
