//! `mruby_stream[_code]`: the script runs in the stream ACCESS phase, and
//! its `stream_status` decides the phase: DECLINED (default) goes on to the
//! next access handler, OK ends the access phase, ABORT closes the
//! connection (`$status` 403), ERROR closes it as an internal error (500).
//!
//! An exception closes that connection (500) with one `[error]` line. A
//! script that uses `Nginx::Stream::Async` runs in a Fiber: when it sleeps
//! (`host/stream.rs`), the handler returns NGX_DONE and the worker serves
//! other connections; the timer runs the phase engine again, which calls
//! this handler, and it resumes the Fiber. The session's state is the
//! stream host, installed around every VM entry.

use ngx::ffi::*;

use super::conf::{main_conf_of_session, srv_conf_of_session};
use super::module_ctx::session_state;
use crate::host::stream::{self, StreamSession};
use crate::host::{self, Host};
use crate::ngx_util::log;
use crate::vm::run::{fiber_context, resume, run, run_for_effect, Completion, ScriptFailure};
use crate::vm::{Script, Vm};

const OK: ngx_int_t = NGX_OK as ngx_int_t;
const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;
const DONE: ngx_int_t = NGX_DONE as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;
const ABORT: ngx_int_t = NGX_ABORT as ngx_int_t;
const FORBIDDEN: ngx_int_t = NGX_STREAM_FORBIDDEN as ngx_int_t;
const INTERNAL_ERROR: ngx_int_t = NGX_STREAM_INTERNAL_SERVER_ERROR as ngx_int_t;

/// The log action while the script runs.
const RUNNING: &core::ffi::CStr = c"running mruby_stream";

/// Pushes the handler into the ACCESS phase (postconfiguration).
pub(crate) fn register(cf: &mut ngx_conf_t) -> Result<(), ()> {
    // SAFETY: inside stream{} cf->ctx is the stream conf context; the core
    // module's main conf and its phase arrays exist by postconfiguration.
    unsafe {
        let ctx = cf.ctx as *mut ngx_stream_conf_ctx_t;
        let core_index = (*core::ptr::addr_of!(ngx_stream_core_module)).ctx_index;
        let cmcf = *(*ctx).main_conf.add(core_index) as *mut ngx_stream_core_main_conf_t;
        let phase = &mut (*cmcf).phases[ngx_stream_phases_NGX_STREAM_ACCESS_PHASE as usize];
        let handler = ngx_array_push(&mut phase.handlers) as *mut ngx_stream_handler_pt;
        if handler.is_null() {
            return Err(());
        }
        *handler = Some(access_handler);
    }
    Ok(())
}

/// How a run (or resume) of the script ended.
enum Outcome {
    Done,
    Suspended,
    Failed(String),
}

/// The ACCESS phase handler: runs (or resumes) the server's script for
/// session `s` and maps what it did to the phase's return code.
unsafe extern "C" fn access_handler(s: *mut ngx_stream_session_t) -> ngx_int_t {
    let Some(script) = srv_conf_of_session(s).and_then(|srv| srv.script.as_deref()) else {
        return DECLINED;
    };
    let Some(vm) = main_conf_of_session(s).and_then(|main| main.vm.as_deref()) else {
        return DECLINED;
    };
    let Some(state) = session_state(s, vm) else {
        return ERROR;
    };
    if state.suspended.get() && state.pending.get() {
        // woken by the client's I/O while the script sleeps: keep waiting
        return DONE;
    }
    // log lines of the script say "while running mruby_stream, client: ..."
    // SAFETY: the session's connection and its log are live.
    let log_ = unsafe { &mut *state.log() };
    let action = core::mem::replace(&mut log_.action, RUNNING.as_ptr().cast_mut());
    let outcome = if state.suspended.get() { resume_script(vm, state) } else { start_script(vm, script, state) };
    if let Outcome::Failed(report) = &outcome {
        log(state.log(), NGX_LOG_ERR, &format!("mruby_stream: {report}"));
    }
    log_.action = action;
    match outcome {
        Outcome::Suspended => DONE,
        Outcome::Failed(_) => INTERNAL_ERROR,
        Outcome::Done => match state.status.get() {
            OK => OK,
            ABORT => FORBIDDEN,
            ERROR => INTERNAL_ERROR,
            _ => DECLINED,
        },
    }
}

fn start_script(vm: &Vm, script: &Script, state: &StreamSession) -> Outcome {
    // a file script without `cache` is recompiled when the file changed
    let proc_ = match script.current(vm.mrb(), false) {
        Ok(proc_) => proc_,
        Err(err) => return Outcome::Failed(format!("failed to recompile {err}")),
    };
    let result = host::enter(&Host::Stream(state), || {
        if !script.suspendable() {
            return run_for_effect(vm, proc_, false).map(|()| Completion::Finished(vm.mrb().nil()));
        }
        // the bytecode gives the script's Fiber; a wait must come from there
        vm.mrb().arena_scope(|| {
            run(vm.mrb(), proc_).and_then(|fiber| {
                state.fiber_context.set(fiber_context(fiber));
                let result = resume(vm, fiber, None).map(fiber_only(vm));
                state.fiber_context.set(core::ptr::null_mut());
                result
            })
        })
    });
    after_run(state, result)
}

fn resume_script(vm: &Vm, state: &StreamSession) -> Outcome {
    stream::put_back_globals(state);
    let fiber = state.fiber.get();
    let result = host::enter(&Host::Stream(state), || {
        state.fiber_context.set(fiber_context(fiber));
        let result = vm.mrb().arena_scope(|| resume(vm, fiber, Some(vm.mrb().nil())).map(fiber_only(vm)));
        state.fiber_context.set(core::ptr::null_mut());
        result
    });
    after_run(state, result)
}

/// Only the Fiber (GC-registered by `after_run`) is kept past the arena.
fn fiber_only(vm: &Vm) -> impl Fn(Completion) -> Completion + '_ {
    move |completion| match completion {
        Completion::Suspended(fiber) => Completion::Suspended(fiber),
        Completion::Finished(_) => Completion::Finished(vm.mrb().nil()),
    }
}

fn after_run(state: &StreamSession, result: Result<Completion, ScriptFailure>) -> Outcome {
    match result {
        Ok(Completion::Suspended(fiber)) if state.pending.get() => {
            stream::keep_fiber(state, fiber);
            stream::take_out_globals(state, true);
            Outcome::Suspended
        }
        Ok(Completion::Suspended(_)) => {
            finish(state);
            Outcome::Failed(String::from("Fiber.yield outside Nginx::Stream::Async: nothing would resume the script"))
        }
        Ok(Completion::Finished(_)) => {
            finish(state);
            Outcome::Done
        }
        Err(failure) => {
            finish(state);
            Outcome::Failed(failure.report)
        }
    }
}

/// The script will not run again: no timer, no Fiber, no globals left.
fn finish(state: &StreamSession) {
    stream::disarm_timer(state);
    stream::release_fiber(state);
    stream::take_out_globals(state, false);
}
