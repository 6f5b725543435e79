//! `mruby_set` / `mruby_set_code` at run time: the rewrite module's script
//! engine reaches our code (appended by `conf/set.rs`) in config order with
//! `set`, `if` and `return`; it runs the script with a request host and
//! pushes its value, which the next code stores like `set` stores one.

use core::mem::size_of;
use core::ptr;

use ngx::ffi::*;

use super::module_ctx::request_ctx;
use crate::conf::set::MrubySetCode;
use crate::host::{self, Context, RequestHost};
use crate::ngx_util::{log, pool_str};
use crate::vm::run::run_to_end;
use crate::vm::{Script, Vm};
use crate::HttpMrubyModule;

/// The script engine stops at a NULL code word; jumping here aborts it.
static EXIT_CODE: usize = 0;

/// Runs the script and pushes its `to_s` value on the engine stack; the
/// following set-var code stores it. An exception ends the rewrite codes
/// with status 500.
pub(crate) unsafe extern "C" fn run_set_code(e: *mut ngx_http_script_engine_t) {
    // SAFETY: the engine's ip points at our MrubySetCode (written by register).
    let (engine, code) = unsafe { (&mut *e, &*((*e).ip as *const MrubySetCode)) };
    // SAFETY: advancing past our code, as every script code does.
    engine.ip = unsafe { engine.ip.add(size_of::<MrubySetCode>()) };
    let r = engine.request;
    // SAFETY: the script and VM live in the configuration pool.
    let (script, vm) = unsafe { (&*code.script, &*code.vm) };
    match evaluate(r, vm, script) {
        Ok(value) => {
            // SAFETY: sp points into the engine's value stack (sized by the rewrite module).
            unsafe {
                (*engine.sp).set_len(value.len as u32);
                (*engine.sp).data = value.data;
                (*engine.sp).set_valid(1);
                (*engine.sp).set_no_cacheable(0);
                (*engine.sp).set_not_found(0);
                engine.sp = engine.sp.add(1);
            }
        }
        Err(()) => {
            engine.status = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            engine.ip = ptr::addr_of!(EXIT_CODE) as *mut u8;
        }
    }
}

fn evaluate(r: *mut ngx_http_request_t, vm: &Vm, script: &Script) -> Result<ngx_str_t, ()> {
    // SAFETY: r is the live request running the rewrite codes.
    let request_log = unsafe { (*(*r).connection).log };
    let ctx = request_ctx(r).ok_or(())?;
    let scope_cache = scope_cache(r);
    let proc_ = script.current(vm.mrb(), scope_cache).map_err(|err| {
        log(request_log, NGX_LOG_ERR, &format!("mruby_set: failed to recompile {err}"));
    })?;
    let mrb = vm.mrb();
    let arena = mrb.arena_save();
    let request = RequestHost::new(r, ctx, Context::SET);
    // the value's to_s is Ruby too: it runs inside the same entry
    let entered = host::enter_request(vm, request, || {
        let value = run_to_end(vm, proc_, script.suspendable()).map_err(|failure| failure.report)?;
        let text = if mrb.is_nil(value) { Ok(mrb.str(b"")) } else { mrb.to_s(value) };
        text.map_err(|exc| format!("to_s failed: {}", crate::vm::run::describe_exception(mrb, exc)))
    });
    let result = match entered {
        Ok(Ok(text)) => {
            // SAFETY: r is live; the value is copied into its pool.
            pool_str(unsafe { (*r).pool }, mrb.str_bytes(text).unwrap_or_default()).ok_or(())
        }
        Ok(Err(report)) => {
            log(request_log, NGX_LOG_ERR, &format!("mruby_set: {report}"));
            Err(())
        }
        Err(()) => Err(()),
    };
    mrb.arena_restore(arena);
    result
}

fn scope_cache(r: *mut ngx_http_request_t) -> bool {
    use ngx::http::HttpModuleLocationConf;
    // SAFETY: r is live.
    HttpMrubyModule::location_conf(unsafe { &*r }).map(|loc| loc.cache()).unwrap_or(false)
}
