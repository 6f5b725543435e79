//! The stream module's directives, configuration structs and process hooks.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::rc::Rc;

use ngx::core::{Pool, Status};
use ngx::ffi::*;
use ngx::ngx_string;

use crate::conf::{cache_argument, compile_file_script, compile_inline_script, run_hook};
use crate::host::Context;
use crate::ngx_util::{conf_args, conf_log, conf_result, log, str_lossy};
use crate::vm::{Script, Vm};

/// `stream{}`-level state: the VM and the process hooks.
#[derive(Default)]
pub struct StreamMainConf {
    /// The VM of this `stream{}` (never the HTTP one).
    pub vm: Option<Rc<Vm>>,
    pub init: Option<Rc<Script>>,
    pub init_worker: Option<Rc<Script>>,
    pub exit_worker: Option<Rc<Script>>,
    /// Whether any scope has `mruby_stream[_code]` (then the ACCESS handler
    /// and the upstream choice are installed).
    pub used: bool,
    /// Every upstream's own peer init, which the chosen-server hook wraps.
    pub peer_inits: Vec<super::upstream::WrappedUpstream>,
}

/// Server-level (and `stream{}`-level) settings.
#[derive(Default)]
pub struct StreamSrvConf {
    /// `mruby_stream` or `mruby_stream_code`: the ACCESS phase script.
    pub script: Option<Rc<Script>>,
}

/// The stream main conf of the configuration being parsed.
pub(crate) fn main_conf_of_cf<'a>(cf: &ngx_conf_t) -> Option<&'a mut StreamMainConf> {
    // SAFETY: inside stream{} cf->ctx is an ngx_stream_conf_ctx_t whose
    // main_conf array holds our StreamMainConf at our ctx_index.
    unsafe {
        let ctx = cf.ctx as *mut ngx_stream_conf_ctx_t;
        let conf = *(*ctx).main_conf.add(super::module().ctx_index) as *mut StreamMainConf;
        conf.as_mut()
    }
}

/// The stream main conf of a session.
pub(crate) fn main_conf_of_session<'a>(s: *mut ngx_stream_session_t) -> Option<&'a StreamMainConf> {
    // SAFETY: a live session's main_conf array holds our StreamMainConf.
    unsafe { (*(*s).main_conf.add(super::module().ctx_index) as *const StreamMainConf).as_ref() }
}

/// The server conf of a session.
pub(crate) fn srv_conf_of_session<'a>(s: *mut ngx_stream_session_t) -> Option<&'a StreamSrvConf> {
    // SAFETY: a live session's srv_conf array holds our StreamSrvConf.
    unsafe { (*(*s).srv_conf.add(super::module().ctx_index) as *const StreamSrvConf).as_ref() }
}

/// The stream main conf of a cycle (None without a stream{} block).
fn main_conf_of_cycle<'a>(cycle: &ngx_cycle_t) -> Option<&'a StreamMainConf> {
    // SAFETY: conf_ctx[ngx_stream_module.index] is NULL or the stream{}
    // context, whose main_conf array holds our StreamMainConf.
    unsafe {
        let ctx = *cycle.conf_ctx.add((*ptr::addr_of!(ngx_stream_module)).index) as *mut ngx_stream_conf_ctx_t;
        if ctx.is_null() {
            return None;
        }
        (*(*ctx).main_conf.add(super::module().ctx_index) as *const StreamMainConf).as_ref()
    }
}

pub(crate) unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx passes the live configuration; the pool drops the conf
    // (and closes the VM) when the configuration is released.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(StreamMainConf::default()) as *mut c_void
}

pub(crate) unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as above.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(StreamSrvConf::default()) as *mut c_void
}

/// A server without its own script inherits the `stream{}`-level one.
pub(crate) unsafe extern "C" fn merge_srv_conf(
    _cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes two StreamSrvConf made by create_srv_conf.
    let (parent, child) = unsafe { (&*(parent as *const StreamSrvConf), &mut *(child as *mut StreamSrvConf)) };
    if child.script.is_none() {
        child.script = parent.script.clone();
    }
    ptr::null_mut()
}

/// The VM of the `stream{}` being parsed, created on first use.
fn stream_vm(cf: &mut ngx_conf_t) -> Result<Rc<Vm>, String> {
    let main = main_conf_of_cf(cf).ok_or("mruby: no stream main conf")?;
    if let Some(vm) = &main.vm {
        return Ok(vm.clone());
    }
    let vm = Rc::new(Vm::open(crate::api::stream::install)?);
    main.vm = Some(vm.clone());
    Ok(vm)
}

/// The script of a directive: `file [cache]`, or `'code'` for `*_code`.
fn directive_script(cf: &mut ngx_conf_t, cmd: &ngx_command_t, inline: bool) -> Result<Rc<Script>, String> {
    let vm = stream_vm(cf)?;
    let args = conf_args(cf);
    if inline {
        compile_inline_script(cf, cmd, &args[0], &vm)
    } else {
        compile_file_script(cf, cmd, &args[0], cache_argument(args)?, &vm)
    }
}

/// Which process hook a `stream{}`-level directive sets (in `offset`).
#[derive(Clone, Copy)]
enum Hook {
    Init = 0,
    InitWorker = 1,
    ExitWorker = 2,
}

fn set_hook(cf: &mut ngx_conf_t, cmd: &ngx_command_t) -> Result<(), String> {
    let inline = str_lossy(&cmd.name).ends_with("_code");
    let script = directive_script(cf, cmd, inline)?;
    let main = main_conf_of_cf(cf).ok_or("mruby: no stream main conf")?;
    let slot = match cmd.offset {
        0 => &mut main.init,
        1 => &mut main.init_worker,
        _ => &mut main.exit_worker,
    };
    if slot.is_some() {
        return Err(String::from("is duplicate"));
    }
    *slot = Some(script);
    Ok(())
}

extern "C" fn set_hook_directive(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf and this command's table entry.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, set_hook(cf_ref, cmd))
}

/// `mruby_stream file [cache]` / `mruby_stream_code 'code'`: one script per scope.
fn set_access_script(cf: &mut ngx_conf_t, cmd: &ngx_command_t, conf: &mut StreamSrvConf) -> Result<(), String> {
    if conf.script.is_some() {
        return Err(format!(
            "\"{}\" directive is duplicate (one mruby_stream or mruby_stream_code per block)",
            str_lossy(&cmd.name)
        ));
    }
    let inline = str_lossy(&cmd.name).ends_with("_code");
    conf.script = Some(directive_script(cf, cmd, inline)?);
    main_conf_of_cf(cf).ok_or("mruby: no stream main conf")?.used = true;
    Ok(())
}

extern "C" fn set_access_directive(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command and our StreamSrvConf (SRV_CONF_OFFSET).
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut StreamSrvConf)) };
    conf_result(cf, set_access_script(cf_ref, cmd, conf))
}

/// `mruby_stream_server_context_code 'code'`: runs now, while the server
/// block is parsed, so `Nginx::Stream.add_listener` can add its ports.
fn run_server_context(cf: &mut ngx_conf_t, cmd: &ngx_command_t) -> Result<(), String> {
    let script = directive_script(cf, cmd, true)?;
    let vm = stream_vm(cf)?;
    super::listen::run_server_context(cf, &vm, &script)
        .map_err(|report| format!("{} failed: {report}", str_lossy(&cmd.name)))
}

extern "C" fn set_server_context(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf and this command.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, run_server_context(cf_ref, cmd))
}

const MAIN: u32 = NGX_STREAM_MAIN_CONF;
const SRV: u32 = NGX_STREAM_SRV_CONF;
const FILE: u32 = NGX_CONF_TAKE12;
const CODE: u32 = NGX_CONF_TAKE1;
/// `offsetof(ngx_stream_conf_ctx_t, main_conf / srv_conf)`.
const MAIN_OFF: ngx_uint_t = core::mem::offset_of!(ngx_stream_conf_ctx_t, main_conf) as ngx_uint_t;
const SRV_OFF: ngx_uint_t = core::mem::offset_of!(ngx_stream_conf_ctx_t, srv_conf) as ngx_uint_t;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, kind: u32, set: SetFn, conf: ngx_uint_t, offset: ngx_uint_t) -> ngx_command_t {
    ngx_command_t { name, type_: kind as ngx_uint_t, set: Some(set), conf, offset, post: ptr::null_mut() }
}

/// The directive table, in ngx_mruby's order. `offset` carries the hook for
/// the process hooks, not a struct offset.
pub static mut COMMANDS: [ngx_command_t; 10] = [
    command(ngx_string!("mruby_stream_init"), MAIN | FILE, set_hook_directive, MAIN_OFF, Hook::Init as _),
    command(ngx_string!("mruby_stream_init_code"), MAIN | CODE, set_hook_directive, MAIN_OFF, Hook::Init as _),
    command(ngx_string!("mruby_stream_init_worker"), MAIN | FILE, set_hook_directive, MAIN_OFF, Hook::InitWorker as _),
    command(
        ngx_string!("mruby_stream_init_worker_code"),
        MAIN | CODE,
        set_hook_directive,
        MAIN_OFF,
        Hook::InitWorker as _,
    ),
    command(ngx_string!("mruby_stream_exit_worker"), MAIN | FILE, set_hook_directive, MAIN_OFF, Hook::ExitWorker as _),
    command(
        ngx_string!("mruby_stream_exit_worker_code"),
        MAIN | CODE,
        set_hook_directive,
        MAIN_OFF,
        Hook::ExitWorker as _,
    ),
    command(ngx_string!("mruby_stream"), MAIN | SRV | FILE, set_access_directive, SRV_OFF, 0),
    command(ngx_string!("mruby_stream_code"), MAIN | SRV | CODE, set_access_directive, SRV_OFF, 0),
    command(ngx_string!("mruby_stream_server_context_code"), SRV | CODE, set_server_context, SRV_OFF, 0),
    ngx_command_t::empty(),
];

/// Installs the ACCESS handler and the upstream choice where a script is
/// configured, then runs `mruby_stream_init` (in the master, before fork).
pub(crate) unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx passes the live configuration.
    let cf_ref = unsafe { &mut *cf };
    let Some(main) = main_conf_of_cf(cf_ref) else {
        return Status::NGX_OK.into();
    };
    if main.used && (super::access::register(cf_ref).is_err() || super::upstream::wrap_upstreams(cf_ref, main).is_err())
    {
        return Status::NGX_ERROR.into();
    }
    let Some(vm) = main.vm.clone() else {
        return Status::NGX_OK.into();
    };
    let result = match &main.init {
        Some(script) => run_hook(&vm, script, Context::INIT, cf_ref.cycle),
        None => Ok(()),
    };
    vm.mark_globals_baseline();
    match result {
        Ok(()) => Status::NGX_OK.into(),
        Err(report) => {
            conf_log(cf, NGX_LOG_EMERG, &format!("mruby_stream_init failed: {report}"));
            Status::NGX_ERROR.into()
        }
    }
}

/// Runs `mruby_stream_init_worker` in a freshly forked worker. A failure is
/// logged at `[alert]` and the worker keeps serving (as the HTTP hook).
pub(crate) fn init_worker(cycle: &mut ngx_cycle_t) {
    let Some(main) = main_conf_of_cycle(cycle) else {
        return;
    };
    let Some(vm) = &main.vm else {
        return;
    };
    let result = match &main.init_worker {
        Some(script) => run_hook(vm, script, Context::INIT_WORKER, core::ptr::from_mut(cycle)),
        None => Ok(()),
    };
    vm.mark_globals_baseline();
    if let Err(report) = result {
        log(cycle.log, NGX_LOG_ALERT, &format!("mruby_stream_init_worker failed: {report}"));
    }
}

/// Runs `mruby_stream_exit_worker` as the worker exits.
pub(crate) fn exit_worker(cycle: &mut ngx_cycle_t) {
    let Some(main) = main_conf_of_cycle(cycle) else {
        return;
    };
    if let (Some(vm), Some(script)) = (&main.vm, &main.exit_worker) {
        if let Err(report) = run_hook(vm, script, Context::EXIT_WORKER, core::ptr::from_mut(cycle)) {
            log(cycle.log, NGX_LOG_ERR, &format!("mruby_stream_exit_worker failed: {report}"));
        }
    }
}
