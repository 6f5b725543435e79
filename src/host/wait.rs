//! Pending waits of a request: `Nginx::Async.sleep` and
//! `Nginx::Async::HTTP.sub_request`, the Fiber of the waiting script, and the
//! last subrequest response.
//!
//! A script that uses `Async` runs in a Fiber. When it waits, the phase
//! handler returns NGX_DONE holding a request reference (`phases/`), and a
//! timer or the subrequest's completion re-runs the phase engine, which
//! calls the same handler again; it resumes the Fiber here. The worker
//! serves other requests meanwhile.

use core::ffi::c_void;
use core::ptr;

use ngx::core::Pool;
use ngx::ffi::*;

use mruby_sys::mrb_value;

use super::request::RequestCtx;
use super::Context;
use crate::ngx_util::{header_elements, pool_str, str_bytes};
use crate::vm::run::{fiber_context, resume, run, yield_blocker, Completion, ScriptFailure};
use crate::vm::{Mrb, RubyError, RubyResult, Vm};

/// How one script run ended.
pub enum ScriptRun {
    Done,
    Failed,
    Suspended,
}

/// A finished subrequest, kept for `Nginx::Async::HTTP.last_response`.
pub struct SubResponse {
    pub status: i64,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The subrequest nginx finalized with an error code (its error page is
    /// not captured), or NULL.
    pub error_page_of: *mut ngx_http_request_t,
}

/// Starts a suspendable script in its Fiber: the bytecode returns the
/// Fiber, whose context is recorded so that a wait can tell it runs there.
pub(crate) fn start_script(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
    proc_: *mut mruby_sys::RProc,
) -> Result<ScriptRun, ScriptFailure> {
    let result = run(vm.mrb(), proc_).and_then(|fiber| {
        ctx.vm.set(vm);
        ctx.fiber_context.set(fiber_context(fiber));
        let result = resume(vm, fiber, None);
        ctx.fiber_context.set(ptr::null_mut());
        result
    });
    after_run(r, vm, ctx, result)
}

/// Resumes the waiting script of `r` (the caller installed its host). Its
/// pending wait returns nil (sleep) or the subrequest's response.
pub(crate) fn resume_script(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Result<ScriptRun, ScriptFailure> {
    let fiber = ctx.fiber.get();
    ctx.fiber_context.set(fiber_context(fiber));
    let result = vm.mrb().arena_scope(|| {
        let value = match ctx.waiting_for.replace(Waiting::Nothing) {
            Waiting::Subrequest => response_value(vm.mrb(), ctx),
            Waiting::Sleep | Waiting::Nothing => vm.mrb().nil(),
        };
        resume(vm, fiber, Some(value)).map(|completion| match completion {
            // only the Fiber (GC-registered) is kept past the arena
            Completion::Suspended(fiber) => Completion::Suspended(fiber),
            Completion::Finished(_) => Completion::Finished(vm.mrb().nil()),
        })
    });
    ctx.fiber_context.set(ptr::null_mut());
    after_run(r, vm, ctx, result)
}

/// Starts an `mruby_set` script in its Fiber: its value when it finished
/// (kept in the caller's arena), None when it waits.
pub(crate) fn start_value_script(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
    proc_: *mut mruby_sys::RProc,
) -> Result<Option<mrb_value>, ScriptFailure> {
    let result = run(vm.mrb(), proc_).and_then(|fiber| {
        ctx.vm.set(vm);
        ctx.fiber_context.set(fiber_context(fiber));
        let result = resume(vm, fiber, None);
        ctx.fiber_context.set(ptr::null_mut());
        result
    });
    value_after_run(r, vm, ctx, result)
}

/// Resumes the waiting `mruby_set` script of `r`: its value when it
/// finished (kept in the caller's arena), None when it waits again.
pub(crate) fn resume_value_script(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
) -> Result<Option<mrb_value>, ScriptFailure> {
    let fiber = ctx.fiber.get();
    ctx.fiber_context.set(fiber_context(fiber));
    let value = match ctx.waiting_for.replace(Waiting::Nothing) {
        Waiting::Subrequest => response_value(vm.mrb(), ctx),
        Waiting::Sleep | Waiting::Nothing => vm.mrb().nil(),
    };
    let result = resume(vm, fiber, Some(value));
    ctx.fiber_context.set(ptr::null_mut());
    value_after_run(r, vm, ctx, result)
}

fn value_after_run(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
    result: Result<Completion, ScriptFailure>,
) -> Result<Option<mrb_value>, ScriptFailure> {
    let value = match &result {
        Ok(Completion::Finished(value)) => Some(*value),
        _ => None,
    };
    match after_run(r, vm, ctx, result)? {
        ScriptRun::Suspended => Ok(None),
        ScriptRun::Done | ScriptRun::Failed => Ok(Some(value.unwrap_or_else(|| vm.mrb().nil()))),
    }
}

fn after_run(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
    result: Result<Completion, ScriptFailure>,
) -> Result<ScriptRun, ScriptFailure> {
    match result {
        Ok(Completion::Finished(_)) => {
            release_fiber(vm, ctx);
            Ok(ScriptRun::Done)
        }
        Ok(Completion::Suspended(fiber)) => {
            if !ctx.async_pending.get() {
                release_fiber(vm, ctx);
                return Err(ScriptFailure {
                    report: String::from("Fiber.yield outside Nginx::Async: nothing would resume the script"),
                });
            }
            if !ctx.suspended.get() {
                vm.mrb().gc_register(fiber);
                ctx.fiber.set(fiber);
                ctx.suspended.set(true);
                register_cleanup(r, vm, ctx).map_err(|()| ScriptFailure { report: "out of memory".into() })?;
            }
            Ok(ScriptRun::Suspended)
        }
        Err(failure) => {
            release_fiber(vm, ctx);
            Err(failure)
        }
    }
}

fn release_fiber(vm: &Vm, ctx: &RequestCtx) {
    if ctx.suspended.get() {
        vm.mrb().gc_unregister(ctx.fiber.get());
        ctx.suspended.set(false);
    }
}

struct WaitCleanup {
    ctx: *const RequestCtx,
    vm: *const Vm,
}

/// However the request ends, its timer goes and its Fiber is released.
fn register_cleanup(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Result<(), ()> {
    if ctx.wait_cleanup_registered.get() {
        return Ok(());
    }
    // SAFETY: r is live; the cleanup data lives in the same pool.
    unsafe {
        let cleanup = ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<WaitCleanup>());
        if cleanup.is_null() {
            return Err(());
        }
        let data = (*cleanup).data as *mut WaitCleanup;
        data.write(WaitCleanup { ctx, vm });
        (*cleanup).handler = Some(wait_cleanup);
    }
    ctx.wait_cleanup_registered.set(true);
    Ok(())
}

unsafe extern "C" fn wait_cleanup(data: *mut c_void) {
    // SAFETY: data is the WaitCleanup written above; ctx and vm outlive the pool's cleanups
    // (ctx is in the pool being destroyed, cleanups run before its memory is freed).
    unsafe {
        let cleanup = &*(data as *const WaitCleanup);
        let ctx = &*cleanup.ctx;
        if !ctx.timer.get().is_null() && (*ctx.timer.get()).timer_set() != 0 {
            ngx_del_timer(ctx.timer.get());
        }
        release_fiber(&*cleanup.vm, ctx);
    }
}

/// What a waiting script waits for; zeroed memory is `Nothing`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Nothing = 0,
    Sleep = 1,
    Subrequest = 2,
}

/// What a script asks to wait for.
pub(crate) enum Wait<'a> {
    /// `Nginx::Async.sleep(ms)`.
    Sleep(ngx_msec_t),
    /// `Nginx::Async::HTTP.sub_request(path, query)`.
    Subrequest { path: &'a [u8], query: Option<&'a [u8]> },
}

/// The one way a script waits: checks that the script can yield to its
/// handler from here, registers the request's wait cleanup, arms the timer
/// or starts the subrequest, and yields, all in this one call (a C method
/// that returns `mrb_fiber_yield`, like `Fiber.yield`). When the script
/// cannot yield (log phase, filters, a block called from C, a
/// Fiber of its own), nothing is armed and it gets a FiberError saying why.
pub(crate) fn wait(mrb: Mrb, r: *mut ngx_http_request_t, ctx: &RequestCtx, context: Context, what: Wait) -> RubyResult {
    let method = match what {
        Wait::Sleep(_) => "Nginx::Async.sleep",
        Wait::Subrequest { .. } => "Nginx::Async::HTTP.sub_request",
    };
    if !context.within(Context::WAITABLE | Context::SET) {
        return Err(RubyError::new(
            "FiberError",
            format!(
                "Nginx::Async can only wait in post_read, server_rewrite, rewrite, access and content handlers \
                 and mruby_set, not in {} ({method})",
                context.name()
            ),
        ));
    }
    if let Some(reason) = yield_blocker(mrb, ctx.fiber_context.get()) {
        return Err(RubyError::new(
            "FiberError",
            format!("Nginx::Async can only wait in the handler's own Fiber; {method} was called {reason}"),
        ));
    }
    // SAFETY: ctx.vm was set when this Fiber script started (fiber_context is set only then).
    let vm = unsafe { &*ctx.vm.get() };
    register_cleanup(r, vm, ctx).map_err(|()| RubyError::runtime("out of memory"))?;
    match what {
        Wait::Sleep(ms) => arm_timer(r, ctx, ms),
        Wait::Subrequest { path, query } => start_subrequest(r, ctx, path, query),
    }
    .map_err(RubyError::runtime)?;
    ctx.async_pending.set(true);
    // SAFETY: live VM; yield_blocker checked what mrb_fiber_yield would
    // raise for, so this switches to the resumer; the value goes straight back to mruby.
    Ok(unsafe { mruby_sys::mrb_fiber_yield(mrb.as_ptr(), 0, ptr::null()) })
}

/// Arms the request's sleep timer.
fn arm_timer(r: *mut ngx_http_request_t, ctx: &RequestCtx, ms: ngx_msec_t) -> Result<(), String> {
    // SAFETY: r is live; the event lives in its pool and is removed by wait_cleanup.
    unsafe {
        if ctx.timer.get().is_null() {
            let ev = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
            if ev.is_null() {
                return Err("out of memory".into());
            }
            (*ev).handler = Some(sleep_done);
            (*ev).data = ptr::from_ref(ctx).cast_mut().cast();
            (*ev).log = (*(*r).connection).log;
            ctx.timer.set(ev);
        }
        ngx_add_timer(ctx.timer.get(), ms);
    }
    ctx.waiting_for.set(Waiting::Sleep);
    Ok(())
}

unsafe extern "C" fn sleep_done(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its request's live context (the cleanup
    // removes the timer before the request pool goes).
    let ctx = unsafe { &*((*ev).data as *const RequestCtx) };
    ctx.async_pending.set(false);
    wake(ctx.request.get());
}

/// Runs the phase engine again for `r`, which resumes the waiting handler.
fn wake(r: *mut ngx_http_request_t) {
    // SAFETY: r is live; this is what nginx's own event handlers do.
    unsafe {
        let c = (*r).connection;
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
    }
}

/// Starts an in-memory subrequest whose completion resumes the script.
fn start_subrequest(
    r: *mut ngx_http_request_t,
    ctx: &RequestCtx,
    path: &[u8],
    query: Option<&[u8]>,
) -> Result<(), String> {
    // SAFETY: r is live; uri, args and the post-subrequest record live in its pool.
    unsafe {
        let pool = (*r).pool;
        let mut uri = pool_str(pool, path).ok_or("out of memory")?;
        let mut args = match query {
            Some(q) => Some(pool_str(pool, q).ok_or("out of memory")?),
            None => None,
        };
        let ps =
            ngx_pcalloc(pool, core::mem::size_of::<ngx_http_post_subrequest_t>()) as *mut ngx_http_post_subrequest_t;
        if ps.is_null() {
            return Err("out of memory".into());
        }
        (*ps).handler = Some(subrequest_done);
        (*ps).data = ptr::from_ref(ctx).cast_mut().cast();
        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let args_ptr = args.as_mut().map_or(ptr::null_mut(), |a| a as *mut ngx_str_t);
        let flags = (NGX_HTTP_SUBREQUEST_IN_MEMORY | NGX_HTTP_SUBREQUEST_WAITED) as ngx_uint_t;
        if ngx_http_subrequest(r, &mut uri, args_ptr, &mut sr, ps, flags) != NGX_OK as ngx_int_t {
            return Err(format!("cannot start a subrequest to {}", String::from_utf8_lossy(path)));
        }
    }
    ctx.waiting_for.set(Waiting::Subrequest);
    Ok(())
}

/// The last subrequest response as an `Nginx::Async::HTTP::Response` (nil if none).
pub(crate) fn response_value(mrb: Mrb, ctx: &RequestCtx) -> mrb_value {
    let Some(response) = last_response(ctx) else {
        return mrb.nil();
    };
    let headers = mrb.hash_new();
    for (name, value) in &response.headers {
        mrb.hash_set(headers, mrb.str(name), mrb.str(value));
    }
    let args = [mrb.int(response.status), headers, mrb.str(&response.body)];
    match mrb.class_get("Nginx::Async::HTTP::Response") {
        // SAFETY: inside protect; the class is live and takes three arguments.
        Some(class) => mrb
            .protect(|mrb| unsafe { mruby_sys::mrb_obj_new(mrb.as_ptr(), class, 3, args.as_ptr()) })
            .unwrap_or_else(|_| mrb.nil()),
        None => mrb.nil(),
    }
}

/// Post-subrequest handler: keeps status, headers and body for the parent;
/// nginx then posts the parent, whose phase handler resumes the script.
unsafe extern "C" fn subrequest_done(sr: *mut ngx_http_request_t, data: *mut c_void, rc: ngx_int_t) -> ngx_int_t {
    // SAFETY: nginx passes the finished, still-live subrequest.
    let sub = unsafe { &mut *sr };
    let parent = sub.parent;
    // SAFETY: data is the parent's context (start_subrequest), in the parent's pool.
    let ctx = unsafe { &*(data as *const RequestCtx) };
    // nginx calls this once with the error code and, after generating its
    // error page, again: the first call's record (empty body) stands.
    let kept = ctx.sub_response.get();
    // SAFETY: sub_response is NULL or a SubResponse in the parent's pool.
    if !kept.is_null() && unsafe { (*kept).error_page_of == sr } {
        return rc;
    }
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        // ngx_mruby never captured nginx's own error page: status only
        return record_response(
            parent,
            ctx,
            SubResponse { status: rc as i64, headers: Vec::new(), body: Vec::new(), error_page_of: sr },
            rc,
        );
    }
    let status = if sub.headers_out.status != 0 {
        sub.headers_out.status as i64
    } else if rc >= 100 {
        rc as i64
    } else {
        NGX_HTTP_INTERNAL_SERVER_ERROR as i64
    };
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = header_elements(&mut sub.headers_out.headers)
        .into_iter()
        // SAFETY: header_elements returns live elements of the subrequest.
        .map(|elt| unsafe { (str_bytes(&(*elt).key).to_vec(), str_bytes(&(*elt).value).to_vec()) })
        .collect();
    if sub.headers_out.content_type.len > 0 {
        headers.push((b"Content-Type".to_vec(), str_bytes(&sub.headers_out.content_type).to_vec()));
    }
    let mut body = Vec::new();
    // SAFETY: an in-memory subrequest keeps its response in `out`.
    unsafe {
        let mut link = sub.out;
        while !link.is_null() {
            let buf = (*link).buf;
            if !buf.is_null() && !(*buf).pos.is_null() && (*buf).last > (*buf).pos {
                body.extend_from_slice(core::slice::from_raw_parts(
                    (*buf).pos,
                    (*buf).last.offset_from((*buf).pos) as usize,
                ));
            }
            link = (*link).next;
        }
    }
    record_response(parent, ctx, SubResponse { status, headers, body, error_page_of: ptr::null_mut() }, rc)
}

/// Keeps `response` for the parent's `last_response` and lets it resume.
fn record_response(
    parent: *mut ngx_http_request_t,
    ctx: &RequestCtx,
    response: SubResponse,
    rc: ngx_int_t,
) -> ngx_int_t {
    // SAFETY: the parent's pool outlives its subrequests.
    let pool = unsafe { Pool::from_ngx_pool((*parent).pool) };
    ctx.sub_response.set(pool.allocate(response));
    ctx.async_pending.set(false);
    rc
}

/// The last finished subrequest of the request.
pub(crate) fn last_response(ctx: &RequestCtx) -> Option<&SubResponse> {
    // SAFETY: allocated in the request pool by subrequest_done.
    (!ctx.sub_response.get().is_null()).then(|| unsafe { &*ctx.sub_response.get() })
}
