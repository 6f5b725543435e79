//! `mruby_set` / `mruby_set_code` at run time: the rewrite module's script
//! engine reaches our code (appended by `conf/set.rs`) in config order with
//! `set`, `if` and `return`; it runs the script with a request host and
//! pushes its value, which the next code stores like `set` stores one. A
//! script may wait (`Nginx::Async`): see [`run_set_code`].

use core::mem::size_of;
use core::ptr;

use ngx::core::Pool;
use ngx::ffi::*;

use super::module_ctx::request_ctx;
use crate::conf::set::MrubySetCode;
use crate::conf::HandlerSlot;
use crate::host::{self, wait, Context, RequestCtx, RequestHost};
use crate::ngx_util::{log, pool_str};
use crate::vm::run::run_to_end;
use crate::vm::{Script, Vm};
use crate::HttpMrubyModule;

/// The script engine stops at a NULL code word; jumping here aborts it.
static EXIT_CODE: usize = 0;

/// Runs the script and pushes its `to_s` value on the engine stack; the
/// following set-var code stores it. An exception ends the rewrite codes
/// with status 500. A script that waits (`Nginx::Async`) ends them with
/// NGX_DONE: when the wait is over nginx runs the phase again, the codes run
/// again from the start, and this one resumes the script.
pub(crate) unsafe extern "C" fn run_set_code(e: *mut ngx_http_script_engine_t) {
    // SAFETY: the engine's ip points at our MrubySetCode (written by register).
    let (engine, code) = unsafe { (&mut *e, &*((*e).ip as *const MrubySetCode)) };
    // the code's address identifies this mruby_set across re-runs
    let code_id = engine.ip as usize;
    // SAFETY: advancing past our code, as every script code does.
    engine.ip = unsafe { engine.ip.add(size_of::<MrubySetCode>()) };
    let r = engine.request;
    // SAFETY: the script and VM live in the configuration pool.
    let (script, vm) = unsafe { (&*code.script, &*code.vm) };
    match evaluate(r, vm, script, code_id) {
        Ok(Evaluated::Value(value)) => {
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
        Ok(Evaluated::Waiting) => {
            engine.status = super::suspend(r);
            engine.ip = ptr::addr_of!(EXIT_CODE) as *mut u8;
        }
        Err(()) => {
            engine.status = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            engine.ip = ptr::addr_of!(EXIT_CODE) as *mut u8;
        }
    }
}

/// What running an `mruby_set` script gave.
enum Evaluated {
    Value(ngx_str_t),
    /// The script waits; the rewrite codes stop here.
    Waiting,
}

fn evaluate(r: *mut ngx_http_request_t, vm: &Vm, script: &Script, code_id: usize) -> Result<Evaluated, ()> {
    // SAFETY: r is the live request running the rewrite codes.
    let request_log = unsafe { (*(*r).connection).log };
    let ctx = request_ctx(r).ok_or(())?;
    if let Some(value) = waited_value(ctx, code_id) {
        return Ok(Evaluated::Value(value));
    }
    let resuming = ctx.suspended.get() && ctx.set_waiting.get() == code_id;
    if resuming {
        // give back the reference the wait took (the rewrite phase is not content)
        super::reenter(r, HandlerSlot::Rewrite);
        if ctx.async_pending.get() {
            // woken by something else (a write event): keep waiting
            return Ok(Evaluated::Waiting);
        }
    }
    let proc_ = if resuming {
        None
    } else {
        Some(script.current(vm.mrb(), scope_cache(r)).map_err(|err| {
            log(request_log, NGX_LOG_ERR, &format!("mruby_set: failed to recompile {err}"));
        })?)
    };
    let mrb = vm.mrb();
    let arena = mrb.arena_save();
    let request = RequestHost::new(r, ctx, Context::SET);
    // the value's to_s is Ruby too: it runs inside the same entry
    let entered = host::enter_request(vm, request, || {
        let run = match proc_ {
            None => wait::resume_value_script(r, vm, ctx),
            Some(proc_) if script.suspendable() => wait::start_value_script(r, vm, ctx, proc_),
            Some(proc_) => run_to_end(vm, proc_, false).map(Some),
        };
        let Some(value) = run.map_err(|failure| failure.report)? else {
            return Ok(None);
        };
        let text = if mrb.is_nil(value) { Ok(mrb.str(b"")) } else { mrb.to_s(value) };
        text.map(Some).map_err(|exc| format!("to_s failed: {}", crate::vm::run::describe_exception(mrb, exc)))
    });
    let result = match entered {
        Ok(Ok(Some(text))) => {
            // SAFETY: r is live; the value is copied into its pool.
            let value = pool_str(unsafe { (*r).pool }, mrb.str_bytes(text).unwrap_or_default()).ok_or(())?;
            if resuming {
                ctx.set_waiting.set(0);
                keep_waited_value(r, ctx, code_id, value)?;
            }
            Ok(Evaluated::Value(value))
        }
        Ok(Ok(None)) => {
            ctx.set_waiting.set(code_id);
            Ok(Evaluated::Waiting)
        }
        Ok(Err(report)) => {
            ctx.set_waiting.set(0);
            log(request_log, NGX_LOG_ERR, &format!("mruby_set: {report}"));
            Err(())
        }
        Err(()) => Err(()),
    };
    mrb.arena_restore(arena);
    result
}

/// The value a waited script of this code gave earlier in this request.
fn waited_value(ctx: &RequestCtx, code_id: usize) -> Option<ngx_str_t> {
    // SAFETY: set_values is NULL or a Vec in the request pool.
    let values = unsafe { ctx.set_values.get().as_ref() }?;
    values.iter().find(|(id, _)| *id == code_id).map(|(_, value)| *value)
}

/// Keeps the value of a script that waited, for the rest of the request.
fn keep_waited_value(r: *mut ngx_http_request_t, ctx: &RequestCtx, code_id: usize, value: ngx_str_t) -> Result<(), ()> {
    if ctx.set_values.get().is_null() {
        // SAFETY: the request pool outlives the ctx that points at the Vec
        // (the pool drops the Vec with the request).
        let pool = unsafe { Pool::from_ngx_pool((*r).pool) };
        let values = pool.allocate(Vec::new());
        if values.is_null() {
            return Err(());
        }
        ctx.set_values.set(values);
    }
    // SAFETY: allocated above or earlier in this request's pool; only this code touches it.
    unsafe { (*ctx.set_values.get()).push((code_id, value)) };
    Ok(())
}

fn scope_cache(r: *mut ngx_http_request_t) -> bool {
    use ngx::http::HttpModuleLocationConf;
    // SAFETY: r is live.
    HttpMrubyModule::location_conf(unsafe { &*r }).map(|loc| loc.cache()).unwrap_or(false)
}
