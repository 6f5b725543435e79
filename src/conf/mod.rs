//! Directives: the command table, the configuration structs, and the
//! config-time hooks (postconfiguration, init_worker, exit_worker) that run
//! the process scripts with a process host. `set.rs` emits `mruby_set`
//! codes, `listen.rs` runs `mruby_server_context_handler_code` and adds
//! the listeners it asks for.
//!
//! May import: `vm/`, `host/`, `api/` (only `api::install`, handed to
//! `Vm::open`), `upstream/` (its directive). Never `phases/` or `tls/`:
//! what they need from here flows one way (`lib.rs` wires the rest).

mod handlers;
pub mod listen;
pub mod set;

use core::ffi::{c_char, c_void};
use core::ptr;
use std::path::PathBuf;
use std::rc::Rc;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError};
use ngx::ngx_string;

use crate::host::{self, Context, Host};
pub(crate) use crate::ngx_util::{conf_args as args, conf_result};
use crate::ngx_util::{conf_log, log, str_lossy};
use crate::vm::{cpu_limit, Script, Vm};
use crate::HttpMrubyModule;

pub use handlers::HandlerSlot;

/// `http{}`-level state: the VM and the process-wide hooks.
pub struct MainConf {
    /// The VM shared by every server and location of this `http{}`.
    pub vm: Option<Rc<Vm>>,
    pub init: Option<Rc<Script>>,
    pub init_worker: Option<Rc<Script>>,
    pub exit_worker: Option<Rc<Script>>,
    /// `mruby_memory_limit` in bytes (0: off); unset keeps the VM's default.
    pub memory_limit: Option<usize>,
    /// Which phases any scope put Ruby in; only those get a phase handler.
    pub used_slots: [bool; HandlerSlot::COUNT],
    /// The function `mruby_set` codes call (`phases/set.rs`), set by
    /// `lib.rs` at preconfiguration.
    pub set_code_runner: Option<unsafe extern "C" fn(*mut ngx_http_script_engine_t)>,
    /// Settings other features read too (`shared_conf.rs`).
    pub shared: crate::shared_conf::SharedConf,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            vm: None,
            init: None,
            init_worker: None,
            exit_worker: None,
            memory_limit: None,
            used_slots: [false; HandlerSlot::COUNT],
            set_code_runner: None,
            shared: crate::shared_conf::SharedConf::default(),
        }
    }
}

/// The scripts of one phase in one scope. Inline runs before file, as in ngx_mruby.
#[derive(Default, Clone)]
pub struct PhaseScripts {
    pub inline: Option<Rc<Script>>,
    pub file: Option<Rc<Script>>,
}

/// Location-level (also server- and http-level) settings.
#[derive(Default)]
pub struct LocConf {
    pub handlers: [PhaseScripts; HandlerSlot::COUNT],
    /// `mruby_cache`: treat every file handler in scope as cached.
    pub cache: Option<bool>,
    /// `mruby_add_handler`: run the requested `.rb` file as the content handler.
    pub add_handler: Option<bool>,
    /// `mruby_enable_read_request_body`: read the body before Ruby runs.
    pub read_body: Option<bool>,
    /// `mruby_output_body_filter_buffer`: the largest response body the body
    /// filter collects (bytes).
    pub filter_buffer: Option<usize>,
    /// `mruby_cpu_limit`: CPU milliseconds one script run may use; 0 = off.
    pub cpu_limit_ms: Option<u64>,
}

/// Default of `mruby_output_body_filter_buffer`.
pub const DEFAULT_FILTER_BUFFER: usize = 16 * 1024 * 1024;

impl LocConf {
    pub fn cache(&self) -> bool {
        self.cache.unwrap_or(false)
    }

    /// The largest response body the body filter collects.
    pub fn filter_buffer(&self) -> usize {
        self.filter_buffer.unwrap_or(DEFAULT_FILTER_BUFFER)
    }

    pub fn scripts(&self, slot: HandlerSlot) -> &PhaseScripts {
        &self.handlers[slot as usize]
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), MergeConfigError> {
        for (mine, parent) in self.handlers.iter_mut().zip(prev.handlers.iter()) {
            if mine.inline.is_none() {
                mine.inline = parent.inline.clone();
            }
            if mine.file.is_none() {
                mine.file = parent.file.clone();
            }
        }
        self.cache = self.cache.or(prev.cache);
        self.add_handler = self.add_handler.or(prev.add_handler);
        self.read_body = self.read_body.or(prev.read_body);
        self.filter_buffer = self.filter_buffer.or(prev.filter_buffer);
        self.cpu_limit_ms = self.cpu_limit_ms.or(prev.cpu_limit_ms);
        Ok(())
    }
}

/// The directive's name, for messages.
fn directive_name(cmd: &ngx_command_t) -> String {
    str_lossy(&cmd.name)
}

/// The VM of the `http{}` block being parsed, created on first use.
pub fn conf_vm(cf: &mut ngx_conf_t) -> Result<Rc<Vm>, String> {
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("mruby: no http main conf")?;
    if let Some(vm) = &main.vm {
        return Ok(vm.clone());
    }
    let vm = Rc::new(Vm::open(crate::api::install)?);
    if let Some(bytes) = main.memory_limit {
        vm.set_memory_limit(bytes);
    }
    main.vm = Some(vm.clone());
    Ok(vm)
}

/// Resolves a script path: absolute as given; relative to the nginx prefix
/// when the file is there, else to the working directory (ngx_mruby's rule).
fn resolve_path(cf: &ngx_conf_t, name: &ngx_str_t) -> PathBuf {
    let path = PathBuf::from(str_lossy(name));
    if path.is_absolute() {
        return path;
    }
    // SAFETY: cf->cycle is the cycle being configured.
    let prefix = unsafe { str_lossy(&(*cf.cycle).prefix) };
    let under_prefix = PathBuf::from(prefix).join(&path);
    if under_prefix.exists() {
        return under_prefix;
    }
    std::env::current_dir().map(|cwd| cwd.join(&path)).unwrap_or(path)
}

/// `file [cache]` (the directive's arguments).
pub(crate) fn parse_file_script(cf: &mut ngx_conf_t, cmd: &ngx_command_t) -> Result<Rc<Script>, String> {
    parse_file_args(cf, cmd, args(cf))
}

/// `file [cache]` from `args`: the only valid second argument is the literal `cache`.
fn parse_file_args(cf: &mut ngx_conf_t, cmd: &ngx_command_t, args: &[ngx_str_t]) -> Result<Rc<Script>, String> {
    let cache = cache_argument(args)?;
    let vm = conf_vm(cf)?;
    compile_file_script(cf, cmd, &args[0], cache, &vm)
}

/// Compiles the script file `name` in `vm` (the HTTP or the stream VM);
/// a failure names the directive, the file and the line.
pub(crate) fn compile_file_script(
    cf: &mut ngx_conf_t,
    cmd: &ngx_command_t,
    name: &ngx_str_t,
    cache: bool,
    vm: &Vm,
) -> Result<Rc<Script>, String> {
    let path = resolve_path(cf, name);
    let script =
        Script::from_file(vm.mrb(), path, cache).map_err(|err| format!("{} failed: {err}", directive_name(cmd)))?;
    Ok(Rc::new(script))
}

/// `file [cache]`: whether the only valid second argument, `cache`, is there.
pub(crate) fn cache_argument(args: &[ngx_str_t]) -> Result<bool, String> {
    match args.get(1) {
        None => Ok(false),
        Some(arg) if crate::ngx_util::str_bytes(arg) == b"cache" => Ok(true),
        Some(arg) => Err(format!("invalid parameter \"{}\", valid parameter is only \"cache\"", str_lossy(arg))),
    }
}

/// `'code'`: compiled once, labelled with the directive and config line.
pub(crate) fn parse_inline_script(
    cf: &mut ngx_conf_t,
    cmd: &ngx_command_t,
    code: &ngx_str_t,
) -> Result<Rc<Script>, String> {
    let vm = conf_vm(cf)?;
    compile_inline_script(cf, cmd, code, &vm)
}

/// Compiles inline `code` in `vm`, labelled `<directive>@<file>:<line>`.
pub(crate) fn compile_inline_script(
    cf: &mut ngx_conf_t,
    cmd: &ngx_command_t,
    code: &ngx_str_t,
    vm: &Vm,
) -> Result<Rc<Script>, String> {
    // SAFETY: conf_file is set while a file is being parsed.
    let (file, line) = unsafe { (str_lossy(&(*cf.conf_file).file.name), (*cf.conf_file).line) };
    let label = format!("{}@{}:{}", directive_name(cmd), file, line);
    let script = Script::from_inline(vm.mrb(), str_lossy(code), label)
        .map_err(|err| format!("{} failed: {err}", directive_name(cmd)))?;
    Ok(Rc::new(script))
}

/// Which process-wide hook a main-level directive sets.
#[derive(Clone, Copy)]
enum MainHook {
    Init = 0,
    InitWorker = 1,
    ExitWorker = 2,
}

impl MainHook {
    fn from_offset(offset: ngx_uint_t) -> MainHook {
        match offset {
            0 => MainHook::Init,
            1 => MainHook::InitWorker,
            _ => MainHook::ExitWorker,
        }
    }
}

fn set_main_hook(cf: &mut ngx_conf_t, cmd: &ngx_command_t, inline: bool) -> Result<(), String> {
    let script = if inline { parse_inline_script(cf, cmd, &args(cf)[0])? } else { parse_file_script(cf, cmd)? };
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("mruby: no http main conf")?;
    let slot = match MainHook::from_offset(cmd.offset) {
        MainHook::Init => &mut main.init,
        MainHook::InitWorker => &mut main.init_worker,
        MainHook::ExitWorker => &mut main.exit_worker,
    };
    if slot.is_some() {
        return Err(String::from("is duplicated"));
    }
    *slot = Some(script);
    Ok(())
}

extern "C" fn set_main_file(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf and this command's table entry.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, set_main_hook(cf_ref, cmd, false))
}

extern "C" fn set_main_inline(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: as above.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, set_main_hook(cf_ref, cmd, true))
}

fn set_phase_script(cf: &mut ngx_conf_t, cmd: &ngx_command_t, conf: &mut LocConf, inline: bool) -> Result<(), String> {
    let slot = HandlerSlot::from_index(cmd.offset).ok_or("mruby: bad handler slot")?;
    let script = if inline { parse_inline_script(cf, cmd, &args(cf)[0])? } else { parse_file_script(cf, cmd)? };
    let scripts = &mut conf.handlers[slot as usize];
    let target = if inline { &mut scripts.inline } else { &mut scripts.file };
    if target.is_some() {
        return Err(format!("\"{}\" directive is duplicated", directive_name(cmd)));
    }
    *target = Some(script);
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("mruby: no http main conf")?;
    main.used_slots[slot as usize] = true;
    Ok(())
}

extern "C" fn set_phase_file(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command, and our LocConf (LOC_CONF_OFFSET).
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_phase_script(cf_ref, cmd, conf, false))
}

extern "C" fn set_phase_inline(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as above.
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_phase_script(cf_ref, cmd, conf, true))
}

/// `mruby_set $var file [cache]` / `mruby_set_code $var 'code'`.
fn set_variable_script(cf: &mut ngx_conf_t, cmd: &ngx_command_t, inline: bool) -> Result<(), String> {
    let all = args(cf);
    let name = crate::ngx_util::str_bytes(&all[0]);
    let Some(var_name) = name.strip_prefix(b"$").filter(|n| !n.is_empty()) else {
        return Err(format!("invalid variable name \"{}\"", String::from_utf8_lossy(name)));
    };
    let script = if inline {
        if all.len() != 2 {
            return Err(String::from("takes exactly a variable and one code argument"));
        }
        parse_inline_script(cf, cmd, &all[1])?
    } else {
        let file_args = &all[1..];
        if file_args.len() > 2 {
            return Err(String::from("takes a variable, a file and an optional \"cache\""));
        }
        parse_file_args(cf, cmd, file_args)?
    };
    set::register(cf, var_name, script)
}

extern "C" fn set_var_file(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf and this command.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, set_variable_script(cf_ref, cmd, false))
}

extern "C" fn set_var_inline(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: as above.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, set_variable_script(cf_ref, cmd, true))
}

/// `on|off` flags stored in `Option<bool>` (unset inherits).
fn set_flag(cf: &mut ngx_conf_t, cmd: &ngx_command_t, conf: &mut LocConf) -> Result<(), String> {
    let value = match crate::ngx_util::str_bytes(&args(cf)[0]).to_ascii_lowercase().as_slice() {
        b"on" => true,
        b"off" => false,
        _ => {
            return Err(format!(
                "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                str_lossy(&args(cf)[0]),
                directive_name(cmd)
            ))
        }
    };
    let target = match cmd.offset {
        0 => &mut conf.cache,
        1 => &mut conf.add_handler,
        _ => &mut conf.read_body,
    };
    if target.is_some() {
        return Err(String::from("is duplicate"));
    }
    *target = Some(value);
    if cmd.offset == 1 && value {
        conf_vm(cf)?;
        let main = HttpMrubyModule::main_conf_mut(cf).ok_or("mruby: no http main conf")?;
        main.used_slots[HandlerSlot::Content as usize] = true;
    }
    Ok(())
}

extern "C" fn set_flag_directive(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command, and our LocConf.
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_flag(cf_ref, cmd, conf))
}

/// `mruby_output_body_filter_buffer <size>`: nginx size syntax (`512k`, `16m`).
fn set_filter_buffer(cf: &mut ngx_conf_t, cmd: &ngx_command_t, conf: &mut LocConf) -> Result<(), String> {
    if conf.filter_buffer.is_some() {
        return Err(String::from("is duplicate"));
    }
    let mut value = args(cf)[0];
    // SAFETY: value is the directive's argument, live while it is parsed.
    let size = unsafe { ngx_parse_size(&mut value) };
    if size <= 0 {
        return Err(format!(
            "invalid value \"{}\" in \"{}\" directive, it must be a size such as 512k or 16m",
            str_lossy(&value),
            directive_name(cmd)
        ));
    }
    conf.filter_buffer = Some(size as usize);
    Ok(())
}

extern "C" fn set_filter_buffer_directive(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command, and our LocConf.
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_filter_buffer(cf_ref, cmd, conf))
}

/// `mruby_cpu_limit` at the `http{}` level, for runs that serve no request
/// (init hooks, TLS handshakes, server-context code). Set while parsing, so
/// a later `mruby_server_context_handler_code` already obeys it.
static PROCESS_CPU_LIMIT_MS: AtomicU64 = AtomicU64::new(cpu_limit::DEFAULT_LIMIT_MS);

/// The budget of the script run starting now (see `vm::cpu_limit`): the
/// request's location setting, or the `http{}` one for other runs.
fn cpu_budget_of_current_run() -> u64 {
    let request = host::current_request_ptr();
    // SAFETY: the host's request is live while its script runs.
    let location = request.and_then(|r| HttpMrubyModule::location_conf(unsafe { &*r }));
    match location {
        Some(loc) => loc.cpu_limit_ms.unwrap_or(cpu_limit::DEFAULT_LIMIT_MS),
        None => PROCESS_CPU_LIMIT_MS.load(Relaxed),
    }
}

/// Called at preconfiguration: every configuration starts from the default.
pub(crate) fn reset_process_limits() {
    PROCESS_CPU_LIMIT_MS.store(cpu_limit::DEFAULT_LIMIT_MS, Relaxed);
    cpu_limit::set_budget_source(cpu_budget_of_current_run);
}

/// `mruby_cpu_limit <time> | off`.
fn set_cpu_limit(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    if conf.cpu_limit_ms.is_some() {
        return Err(String::from("\"mruby_cpu_limit\" directive is duplicate"));
    }
    let value = &args(cf)[0];
    let limit_ms = if crate::ngx_util::str_bytes(value) == b"off" {
        0
    } else {
        let mut text = ngx_str_t { len: value.len, data: value.data };
        // SAFETY: text points at the directive's argument; nginx only reads it.
        match unsafe { ngx_parse_time(&mut text, 0) } {
            ms if ms == NGX_ERROR as ngx_int_t || ms <= 0 => {
                return Err(format!(
                    "invalid value \"{}\" in \"mruby_cpu_limit\" directive, it must be a time (500ms, 5s) or \"off\"",
                    str_lossy(value)
                ))
            }
            ms => ms as u64,
        }
    };
    conf.cpu_limit_ms = Some(limit_ms);
    if cf.cmd_type as u32 == NGX_HTTP_MAIN_CONF {
        PROCESS_CPU_LIMIT_MS.store(limit_ms, Relaxed);
    }
    Ok(())
}

extern "C" fn set_cpu_limit_directive(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf and our LocConf (LOC_CONF_OFFSET).
    let (cf_ref, conf) = unsafe { (&mut *cf, &mut *(conf as *mut LocConf)) };
    conf_result(cf, set_cpu_limit(cf_ref, conf))
}

/// `mruby_memory_limit <size> | off` (http): the bytes the VM may hold.
fn set_memory_limit(cf: &mut ngx_conf_t) -> Result<(), String> {
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("mruby: no http main conf")?;
    if main.memory_limit.is_some() {
        return Err(String::from("\"mruby_memory_limit\" directive is duplicate"));
    }
    let value = &args(cf)[0];
    let bytes = if crate::ngx_util::str_bytes(value) == b"off" {
        0
    } else {
        let mut text = ngx_str_t { len: value.len, data: value.data };
        // SAFETY: text points at the directive's argument; nginx only reads it.
        match unsafe { ngx_parse_size(&mut text) } {
            size if size < 1024 * 1024 => {
                return Err(format!(
                    "invalid value \"{}\" in \"mruby_memory_limit\" directive, it must be a size of at least 1m (64m, 1g) or \"off\"",
                    str_lossy(value)
                ))
            }
            size => size as usize,
        }
    };
    main.memory_limit = Some(bytes);
    if let Some(vm) = &main.vm {
        vm.set_memory_limit(bytes);
    }
    Ok(())
}

extern "C" fn set_memory_limit_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the live cf.
    let cf_ref = unsafe { &mut *cf };
    conf_result(cf, set_memory_limit(cf_ref))
}

/// `mruby_output_filter[_code]` were removed from ngx_mruby in v1.17.2.
extern "C" fn removed_output_filter(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    conf_result(
        cf,
        Err(String::from(
            "mruby_output_filter{,_code} was deleted from v1.17.2, you should use \
             mruby_output_body_filter{,_code} for response body and mruby_output_header_filter{,_code} for response headers",
        )),
    )
}

const HTTP: u32 = NGX_HTTP_MAIN_CONF;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_HTTP_LIF_CONF;
const SRV_LOC: u32 = NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const LOC_OFF: ngx_uint_t = NGX_HTTP_LOC_CONF_OFFSET as ngx_uint_t;
const MAIN_OFF: ngx_uint_t = NGX_HTTP_MAIN_CONF_OFFSET as ngx_uint_t;
const SRV_OFF: ngx_uint_t = NGX_HTTP_SRV_CONF_OFFSET as ngx_uint_t;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, kind: u32, set: SetFn, conf: ngx_uint_t, offset: ngx_uint_t) -> ngx_command_t {
    ngx_command_t { name, type_: kind as ngx_uint_t, set: Some(set), conf, offset, post: ptr::null_mut() }
}

const FILE: u32 = NGX_CONF_TAKE12;
const CODE: u32 = NGX_CONF_TAKE1;
const PR: ngx_uint_t = HandlerSlot::PostRead as ngx_uint_t;
const SR: ngx_uint_t = HandlerSlot::ServerRewrite as ngx_uint_t;
const RW: ngx_uint_t = HandlerSlot::Rewrite as ngx_uint_t;
const AC: ngx_uint_t = HandlerSlot::Access as ngx_uint_t;
const CT: ngx_uint_t = HandlerSlot::Content as ngx_uint_t;
const LG: ngx_uint_t = HandlerSlot::Log as ngx_uint_t;
const HF: ngx_uint_t = HandlerSlot::HeaderFilter as ngx_uint_t;
const BF: ngx_uint_t = HandlerSlot::BodyFilter as ngx_uint_t;

/// The directive table, in ngx_mruby's order. `offset` carries our own
/// selector (hook, phase slot or flag), not a struct offset.
pub static mut COMMANDS: [ngx_command_t; 36] = [
    command(ngx_string!("mruby_init"), HTTP | FILE, set_main_file, MAIN_OFF, MainHook::Init as _),
    command(ngx_string!("mruby_init_code"), HTTP | CODE, set_main_inline, MAIN_OFF, MainHook::Init as _),
    command(ngx_string!("mruby_init_worker"), HTTP | FILE, set_main_file, MAIN_OFF, MainHook::InitWorker as _),
    command(ngx_string!("mruby_init_worker_code"), HTTP | CODE, set_main_inline, MAIN_OFF, MainHook::InitWorker as _),
    command(ngx_string!("mruby_exit_worker"), HTTP | FILE, set_main_file, MAIN_OFF, MainHook::ExitWorker as _),
    command(ngx_string!("mruby_exit_worker_code"), HTTP | CODE, set_main_inline, MAIN_OFF, MainHook::ExitWorker as _),
    command(ngx_string!("mruby_post_read_handler"), HTTP | NGX_HTTP_SRV_CONF | FILE, set_phase_file, LOC_OFF, PR),
    command(
        ngx_string!("mruby_post_read_handler_code"),
        HTTP | NGX_HTTP_SRV_CONF | CODE,
        set_phase_inline,
        LOC_OFF,
        PR,
    ),
    command(ngx_string!("mruby_server_rewrite_handler"), ANY | FILE, set_phase_file, LOC_OFF, SR),
    command(ngx_string!("mruby_server_rewrite_handler_code"), ANY | CODE, set_phase_inline, LOC_OFF, SR),
    command(ngx_string!("mruby_rewrite_handler"), ANY | FILE, set_phase_file, LOC_OFF, RW),
    command(ngx_string!("mruby_rewrite_handler_code"), ANY | CODE, set_phase_inline, LOC_OFF, RW),
    command(ngx_string!("mruby_access_handler"), ANY | FILE, set_phase_file, LOC_OFF, AC),
    command(ngx_string!("mruby_access_handler_code"), ANY | CODE, set_phase_inline, LOC_OFF, AC),
    command(ngx_string!("mruby_content_handler"), ANY | FILE, set_phase_file, LOC_OFF, CT),
    command(ngx_string!("mruby_content_handler_code"), ANY | CODE, set_phase_inline, LOC_OFF, CT),
    command(ngx_string!("mruby_log_handler"), ANY | FILE, set_phase_file, LOC_OFF, LG),
    command(ngx_string!("mruby_log_handler_code"), ANY | CODE, set_phase_inline, LOC_OFF, LG),
    command(ngx_string!("mruby_output_header_filter"), ANY | FILE, set_phase_file, LOC_OFF, HF),
    command(ngx_string!("mruby_output_header_filter_code"), ANY | CODE, set_phase_inline, LOC_OFF, HF),
    command(ngx_string!("mruby_output_body_filter"), ANY | FILE, set_phase_file, LOC_OFF, BF),
    command(ngx_string!("mruby_output_body_filter_code"), ANY | CODE, set_phase_inline, LOC_OFF, BF),
    command(ngx_string!("mruby_set"), ANY | NGX_CONF_2MORE, set_var_file, LOC_OFF, 0),
    command(ngx_string!("mruby_set_code"), ANY | NGX_CONF_2MORE, set_var_inline, LOC_OFF, 0),
    command(ngx_string!("mruby_cache"), SRV_LOC | NGX_CONF_FLAG, set_flag_directive, LOC_OFF, 0),
    command(ngx_string!("mruby_add_handler"), SRV_LOC | NGX_CONF_FLAG, set_flag_directive, LOC_OFF, 1),
    command(ngx_string!("mruby_enable_read_request_body"), SRV_LOC | NGX_CONF_FLAG, set_flag_directive, LOC_OFF, 2),
    command(ngx_string!("mruby_output_body_filter_buffer"), ANY | CODE, set_filter_buffer_directive, LOC_OFF, 0),
    command(
        ngx_string!("mruby_server_context_handler_code"),
        NGX_HTTP_SRV_CONF | CODE,
        listen::set_server_context,
        SRV_OFF,
        0,
    ),
    command(
        ngx_string!("mruby_upstream_keepalive"),
        NGX_HTTP_UPS_CONF | CODE,
        crate::upstream::keepalive::set_upstream_keepalive,
        SRV_OFF,
        0,
    ),
    command(ngx_string!("mruby_cpu_limit"), ANY | NGX_CONF_TAKE1, set_cpu_limit_directive, LOC_OFF, 0),
    command(ngx_string!("mruby_memory_limit"), HTTP | NGX_CONF_TAKE1, set_memory_limit_directive, MAIN_OFF, 0),
    command(ngx_string!("mruby_output_filter"), ANY | NGX_CONF_TAKE12, removed_output_filter, LOC_OFF, 0),
    command(ngx_string!("mruby_output_filter_code"), ANY | NGX_CONF_TAKE12, removed_output_filter, LOC_OFF, 0),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
];

/// Runs `mruby_init` (in the master, before workers fork), after `lib.rs`
/// registered the phase handlers.
pub(crate) fn postconfiguration(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let Some(main) = HttpMrubyModule::main_conf_mut(cf) else {
        return Ok(());
    };
    let vm = main.vm.clone();
    let init = main.init.clone();
    let (Some(vm), Some(init)) = (vm, init) else {
        if let Some(vm) = HttpMrubyModule::main_conf(cf).and_then(|m| m.vm.clone()) {
            vm.mark_globals_baseline();
        }
        return Ok(());
    };
    let result = run_hook(&vm, &init, Context::INIT, cf.cycle);
    vm.mark_globals_baseline();
    result.map_err(|report| conf_log(cf, NGX_LOG_EMERG, &format!("mruby_init failed: {report}")))
}

/// Runs a process hook's script with a process host installed (also the
/// stream module's hooks, in the stream VM).
pub(crate) fn run_hook(vm: &Vm, script: &Script, context: Context, cycle: *mut ngx_cycle_t) -> Result<(), String> {
    let proc_ = script.current(vm.mrb(), true).map_err(|err| err.to_string())?;
    host::enter(&Host::Process(context, cycle), || {
        vm.mrb().arena_scope(|| crate::vm::run::run_to_end(vm, proc_, script.suspendable()).map(|_| ()))
    })
    .map_err(|failure| failure.report)
}

fn cycle_main_conf(cycle: &ngx_cycle_t) -> Option<&'static MainConf> {
    HttpMrubyModule::main_conf(cycle)
}

/// Runs `mruby_init_worker` in a freshly forked worker. A failure is logged
/// and the worker keeps serving: nginx would not respawn a worker that
/// fails its init, leaving the server with none.
pub(crate) fn init_worker(cycle: &mut ngx_cycle_t) -> Result<(), ()> {
    cpu_limit::forget_inherited_timer();
    let Some(main) = cycle_main_conf(cycle) else {
        return Ok(());
    };
    let Some(vm) = &main.vm else {
        return Ok(());
    };
    let result = match &main.init_worker {
        Some(script) => run_hook(vm, script, Context::INIT_WORKER, cycle),
        None => Ok(()),
    };
    vm.mark_globals_baseline();
    if let Err(report) = result {
        log(cycle.log, NGX_LOG_ALERT, &format!("mruby_init_worker failed: {report}"));
    }
    Ok(())
}

/// Runs `mruby_exit_worker` as the worker exits.
pub fn exit_worker(cycle: &mut ngx_cycle_t) {
    let Some(main) = cycle_main_conf(cycle) else {
        return;
    };
    if let (Some(vm), Some(script)) = (&main.vm, &main.exit_worker) {
        if let Err(report) = run_hook(vm, script, Context::EXIT_WORKER, cycle) {
            log(cycle.log, NGX_LOG_ERR, &format!("mruby_exit_worker failed: {report}"));
        }
    }
}
