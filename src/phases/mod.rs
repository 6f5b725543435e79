//! Phase and filter handlers: nginx calls these; they decide when to run
//! which script, build the request host, enter the VM, and turn what the
//! script did into the phase's result. What a script reads and writes lives
//! in the host (`host/`), not here.
//!
//! Handlers are registered only for phases some scope configured, so a
//! location without Ruby pays one config lookup at most.
//!
//! May import: `conf/` (the scripts of a scope), `host/`, `vm/`. Nothing
//! imports `phases/` but `lib.rs`.

pub mod body;
pub mod filter;
mod module_ctx;
pub mod set;

use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use crate::conf::{HandlerSlot, LocConf};
use crate::host::wait::{self, ScriptRun};
use crate::host::{self, Context, RequestCtx, RequestHost};
use crate::ngx_util::log;
use crate::vm::run::run_for_effect;
use crate::vm::{Script, Vm};
use crate::HttpMrubyModule;
use module_ctx::request_ctx;

const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;
const OK: ngx_int_t = NGX_OK as ngx_int_t;
const DONE: ngx_int_t = NGX_DONE as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;
const HTTP_INTERNAL_SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const HTTP_NOT_FOUND: ngx_int_t = NGX_HTTP_NOT_FOUND as ngx_int_t;

type PhaseHandler = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

macro_rules! phase_handler {
    ($name:ident, $slot:expr) => {
        unsafe extern "C" fn $name(r: *mut ngx_http_request_t) -> ngx_int_t {
            // SAFETY: nginx passes a live request.
            match HttpMrubyModule::location_conf(unsafe { &*r }) {
                Some(loc) if has_work(loc, $slot) => handle(r, $slot, loc),
                _ => DECLINED,
            }
        }
    };
}

/// Whether the location has something to run in `slot`. Checked before
/// `handle` is called: a phase handler runs for every location of every
/// server once any scope uses its phase, and most of them decline here.
#[inline(always)]
fn has_work(loc: &LocConf, slot: HandlerSlot) -> bool {
    let scripts = loc.scripts(slot);
    scripts.inline.is_some()
        || scripts.file.is_some()
        || (slot == HandlerSlot::Content && loc.add_handler == Some(true))
}

phase_handler!(post_read_handler, HandlerSlot::PostRead);
phase_handler!(server_rewrite_handler, HandlerSlot::ServerRewrite);
phase_handler!(rewrite_handler, HandlerSlot::Rewrite);
phase_handler!(access_handler, HandlerSlot::Access);
phase_handler!(content_handler, HandlerSlot::Content);
phase_handler!(log_handler, HandlerSlot::Log);

fn phase_of(slot: HandlerSlot) -> Option<(ngx_http_phases, PhaseHandler)> {
    Some(match slot {
        HandlerSlot::PostRead => (ngx_http_phases_NGX_HTTP_POST_READ_PHASE, post_read_handler),
        HandlerSlot::ServerRewrite => (ngx_http_phases_NGX_HTTP_SERVER_REWRITE_PHASE, server_rewrite_handler),
        HandlerSlot::Rewrite => (ngx_http_phases_NGX_HTTP_REWRITE_PHASE, rewrite_handler),
        HandlerSlot::Access => (ngx_http_phases_NGX_HTTP_ACCESS_PHASE, access_handler),
        HandlerSlot::Content => (ngx_http_phases_NGX_HTTP_CONTENT_PHASE, content_handler),
        HandlerSlot::Log => (ngx_http_phases_NGX_HTTP_LOG_PHASE, log_handler),
        HandlerSlot::HeaderFilter | HandlerSlot::BodyFilter => return None,
    })
}

/// Pushes a handler for each used phase (postconfiguration).
pub(crate) fn register(cf: &mut ngx_conf_t, used: &[bool; HandlerSlot::COUNT]) -> Result<(), ()> {
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    for slot in HandlerSlot::ALL {
        if !used[slot as usize] {
            continue;
        }
        let Some((phase, handler)) = phase_of(slot) else {
            continue;
        };
        // SAFETY: the phase handler arrays are initialised before postconfiguration.
        unsafe {
            let h = ngx_array_push(&mut cmcf.phases[phase as usize].handlers) as *mut ngx_http_handler_pt;
            if h.is_null() {
                return Err(());
            }
            *h = Some(handler);
        }
    }
    if used[HandlerSlot::HeaderFilter as usize] || used[HandlerSlot::BodyFilter as usize] {
        filter::install();
    }
    Ok(())
}

/// What the scripts of a phase left behind, before mapping to nginx codes.
enum Outcome {
    /// Scripts ran without an exception.
    Ran,
    /// A script raised (already logged).
    Failed,
    /// A script waits (Nginx::Async); the phase resumes later.
    Suspended,
}

/// Runs the scripts `loc` has for `slot` (see [`has_work`]).
#[inline(never)]
fn handle(r: *mut ngx_http_request_t, slot: HandlerSlot, loc: &LocConf) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let request = unsafe { &mut *r };
    let scripts = loc.scripts(slot);
    let Some(vm) = HttpMrubyModule::main_conf(request).and_then(|main| main.vm.as_deref()) else {
        return DECLINED;
    };
    let Some(ctx) = request_ctx(r) else {
        return ERROR;
    };
    if ctx.suspended.get() {
        return resume_phase(r, vm, loc, slot, ctx);
    }
    if loc.read_body == Some(true) && matches!(slot, HandlerSlot::Rewrite | HandlerSlot::Access | HandlerSlot::Content)
    {
        if let Err(rc) = body::ensure_body(r, slot, ctx) {
            return rc;
        }
    }

    let outcome = if scripts.inline.is_none() && scripts.file.is_none() {
        run_requested_file(r, vm, ctx)
    } else {
        run_phase_scripts(r, vm, loc, slot, ctx, 0)
    };
    conclude(r, slot, ctx, outcome)
}

fn conclude(r: *mut ngx_http_request_t, slot: HandlerSlot, ctx: &RequestCtx, outcome: Outcome) -> ngx_int_t {
    match outcome {
        Outcome::Suspended => suspend(r),
        Outcome::Ran | Outcome::Failed => finish(r, slot, ctx, outcome),
    }
}

/// The phase engine called us again while a script of this phase waits:
/// resume it if what it waited for is done.
fn resume_phase(r: *mut ngx_http_request_t, vm: &Vm, loc: &LocConf, slot: HandlerSlot, ctx: &RequestCtx) -> ngx_int_t {
    reenter(r, slot);
    if ctx.async_pending.get() {
        // woken by something else (a write event): keep waiting
        return suspend(r);
    }
    let request = RequestHost::new(r, ctx, slot.context());
    let resumed = match host::enter_request(vm, request, || wait::resume_script(r, vm, ctx)) {
        Ok(Ok(run)) => run,
        Ok(Err(failure)) => {
            // SAFETY: r is live.
            log(unsafe { (*(*r).connection).log }, NGX_LOG_ERR, &format!("{}: {}", slot.directive(), failure.report));
            ScriptRun::Failed
        }
        Err(()) => ScriptRun::Failed,
    };
    let outcome = match resumed {
        ScriptRun::Suspended => Outcome::Suspended,
        ScriptRun::Failed => Outcome::Failed,
        ScriptRun::Done if ctx.has_output() || ctx.status_set.get() => Outcome::Ran,
        ScriptRun::Done => run_phase_scripts(r, vm, loc, slot, ctx, ctx.script_index.get() as usize + 1),
    };
    conclude(r, slot, ctx, outcome)
}

/// Runs inline then file script (from `first`); the file one is skipped once
/// the inline one produced output or a status (it decided the phase).
fn run_phase_scripts(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    loc: &LocConf,
    slot: HandlerSlot,
    ctx: &RequestCtx,
    first: usize,
) -> Outcome {
    let scripts = loc.scripts(slot);
    let in_order = [(0u8, &scripts.inline), (1u8, &scripts.file)];
    for &(index, script) in in_order.get(first..).unwrap_or_default() {
        let Some(script) = script else {
            continue;
        };
        ctx.script_index.set(index);
        match run_one(r, vm, script, loc.cache(), slot, ctx, slot.context().within(Context::WAITABLE)) {
            ScriptRun::Failed => return Outcome::Failed,
            ScriptRun::Suspended => return Outcome::Suspended,
            ScriptRun::Done => {}
        }
        if ctx.has_output() || ctx.status_set.get() {
            break;
        }
    }
    Outcome::Ran
}

/// Runs one script for `r` with its request host installed, logging an
/// exception. With `waitable`, a script that uses Nginx::Async may suspend;
/// elsewhere waiting is an error.
pub(crate) fn run_one(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    script: &Script,
    scope_cache: bool,
    slot: HandlerSlot,
    ctx: &RequestCtx,
    waitable: bool,
) -> ScriptRun {
    // SAFETY: r is live; its connection log is valid for the request.
    let request_log = unsafe { (*(*r).connection).log };
    let proc_ = match script.current(vm.mrb(), scope_cache) {
        Ok(proc_) => proc_,
        Err(err) => {
            log(request_log, NGX_LOG_ERR, &format!("{}: failed to recompile {err}", slot.directive()));
            return ScriptRun::Failed;
        }
    };
    let request = RequestHost::new(r, ctx, slot.context());
    let entered = host::enter_request(vm, request, || {
        if waitable && script.suspendable() {
            vm.mrb().arena_scope(|| wait::start_script(r, vm, ctx, proc_))
        } else {
            run_for_effect(vm, proc_, script.suspendable()).map(|()| ScriptRun::Done)
        }
    });
    let Ok(result) = entered else {
        return ScriptRun::Failed;
    };
    match result {
        Ok(run) => run,
        Err(failure) => {
            log(request_log, NGX_LOG_ERR, &format!("{}: {}", slot.directive(), failure.report));
            ScriptRun::Failed
        }
    }
}

/// `mruby_add_handler on`: the requested `.rb` file is the content script.
fn run_requested_file(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Outcome {
    let mut root: usize = 0;
    let mut path = ngx_str_t { len: 0, data: ptr::null_mut() };
    // SAFETY: r is live; map_uri_to_path allocates the path in r->pool.
    let mapped = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root, 0) };
    if mapped.is_null() {
        return Outcome::Failed;
    }
    // the mapped path is NUL-terminated; drop the terminator
    let bytes = crate::ngx_util::str_bytes(&path);
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let file = std::path::PathBuf::from(String::from_utf8_lossy(bytes).into_owned());
    if !file.is_file() {
        // SAFETY: r is live.
        unsafe { (*r).headers_out.status = HTTP_NOT_FOUND as ngx_uint_t };
        ctx.status.set(HTTP_NOT_FOUND);
        ctx.status_set.set(true);
        return Outcome::Ran;
    }
    let script = match Script::from_file(vm.mrb(), file, true) {
        Ok(script) => script,
        Err(err) => {
            // SAFETY: r is live.
            log(unsafe { (*(*r).connection).log }, NGX_LOG_ERR, &format!("mruby_add_handler: {err}"));
            return Outcome::Failed;
        }
    };
    let run = run_one(r, vm, &script, true, HandlerSlot::Content, ctx, false);
    script.release(vm.mrb());
    match run {
        ScriptRun::Done => Outcome::Ran,
        _ => Outcome::Failed,
    }
}

/// Maps what the script did to the phase's return code (ngx_mruby's rules,
/// minus its hangs and lost bodies; see README "Decisions").
fn finish(r: *mut ngx_http_request_t, slot: HandlerSlot, ctx: &RequestCtx, outcome: Outcome) -> ngx_int_t {
    if slot == HandlerSlot::Log {
        ctx.discard_output();
        return OK;
    }
    if let Outcome::Failed = outcome {
        ctx.discard_output();
        // SAFETY: r is live.
        return if unsafe { (*r).header_sent() } != 0 { ERROR } else { HTTP_INTERNAL_SERVER_ERROR };
    }
    if ctx.redirect_uri.get().len > 0 {
        return internal_redirect(r, slot, ctx);
    }
    let status = ctx.status_set.get().then_some(ctx.status.get());
    let rc = if ctx.has_output() {
        let http_status = status.filter(|s| *s >= 100).unwrap_or(NGX_HTTP_OK as ngx_int_t);
        send_response(r, ctx, http_status)
    } else {
        match status {
            None => match slot {
                HandlerSlot::Content => send_response(r, ctx, NGX_HTTP_OK as ngx_int_t),
                _ => return DECLINED,
            },
            // Nginx::OK in a rewrite phase would finalize without a response
            Some(OK) if matches!(slot, HandlerSlot::Rewrite | HandlerSlot::ServerRewrite) => return DECLINED,
            Some(OK) if slot == HandlerSlot::Content => send_response(r, ctx, NGX_HTTP_OK as ngx_int_t),
            Some(code) if code < 100 => return code,
            // a 2xx without a body: send it as is (ngx_mruby turned 200 into 500)
            Some(code)
                if code < 300 && code != NGX_HTTP_NO_CONTENT as ngx_int_t && code != NGX_HTTP_CREATED as ngx_int_t =>
            {
                send_response(r, ctx, code)
            }
            Some(code) => code,
        }
    };
    finalize_for_phase(r, slot, rc)
}

/// `Nginx.redirect "/path"`: restarts processing at the new URI (keeping
/// the arguments); the phase ends here.
fn internal_redirect(r: *mut ngx_http_request_t, slot: HandlerSlot, ctx: &RequestCtx) -> ngx_int_t {
    let mut uri = ctx.redirect_uri.get();
    ctx.redirect_uri.set(ngx_str_t { len: 0, data: ptr::null_mut() });
    ctx.discard_output();
    // SAFETY: r is live; the uri lives in r->pool. internal_redirect takes a
    // request reference that finalizing with NGX_DONE gives back.
    unsafe {
        let rc = ngx_http_internal_redirect(r, &mut uri, &mut (*r).args);
        if rc == ERROR {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if slot == HandlerSlot::Content {
            return DONE;
        }
        ngx_http_finalize_request(r, DONE);
    }
    DONE
}

/// Content and rewrite checkers finalize with our code themselves; the
/// access and generic checkers treat NGX_OK as "continue", so once a response
/// went out there we finalize it here and stop the phase loop.
fn finalize_for_phase(r: *mut ngx_http_request_t, slot: HandlerSlot, rc: ngx_int_t) -> ngx_int_t {
    match slot {
        HandlerSlot::Content | HandlerSlot::Rewrite | HandlerSlot::ServerRewrite => rc,
        HandlerSlot::HeaderFilter | HandlerSlot::BodyFilter => rc,
        HandlerSlot::Access | HandlerSlot::PostRead | HandlerSlot::Log => {
            if rc == OK || rc == NGX_AGAIN as ngx_int_t {
                // SAFETY: r is live; the response was handed to the filters.
                unsafe { ngx_http_finalize_request(r, rc) };
                DONE
            } else {
                rc
            }
        }
    }
}

/// Sends the headers with `status` and the pending body (may be empty).
fn send_response(r: *mut ngx_http_request_t, ctx: &RequestCtx, status: ngx_int_t) -> ngx_int_t {
    // SAFETY: r is live; the chain links and buffers live in r->pool.
    unsafe {
        let request = &mut *r;
        if request.header_sent() != 0 {
            ctx.discard_output();
            return ERROR;
        }
        // take the body first: header filters may run Ruby too
        let (head, tail, len) = (ctx.out_head.get(), ctx.out_tail.get(), ctx.out_len.get());
        ctx.discard_output();
        request.headers_out.status = status as ngx_uint_t;
        request.headers_out.content_length_n = len as off_t;
        // ngx_mruby sent no Content-Type unless the script set one; use the
        // location's types/default_type like nginx's own handlers do.
        if request.headers_out.content_type.len == 0 && ngx_http_set_content_type(r) != OK {
            return ERROR;
        }
        let rc = ngx_http_send_header(r);
        if rc == ERROR || rc > OK || request.header_only() != 0 || head.is_null() {
            if head.is_null() && rc == OK && request.header_only() == 0 {
                return ngx_http_send_special(r, NGX_HTTP_LAST as ngx_uint_t);
            }
            return rc;
        }
        let tail_buf = (*tail).buf;
        if r == request.main {
            (*tail_buf).set_last_buf(1);
        }
        (*tail_buf).set_last_in_chain(1);
        ngx_http_output_filter(r, head)
    }
}

/// The handler steps aside: hold a request reference and return NGX_DONE.
pub(crate) fn suspend(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r and r->main are live.
    unsafe {
        let main = (*r).main;
        (*main).set_count((*main).count() + 1);
    }
    DONE
}

/// Called again by the phase engine: give back the reference `suspend`
/// took, except in the content phase, whose checker already did by
/// finalizing with NGX_DONE.
pub(crate) fn reenter(r: *mut ngx_http_request_t, slot: HandlerSlot) {
    if slot == HandlerSlot::Content {
        return;
    }
    // SAFETY: r and r->main are live; suspend() incremented count.
    unsafe {
        let main = (*r).main;
        (*main).set_count((*main).count() - 1);
    }
}
