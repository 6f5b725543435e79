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

use super::globals;
use super::request::RequestCtx;
use crate::ngx_util::{header_elements, pool_str, str_bytes};
use crate::vm::run::{resume, start, Completion, ScriptFailure};
use crate::vm::Vm;

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

/// Starts a suspendable script in its Fiber.
pub(crate) fn start_script(
    r: *mut ngx_http_request_t,
    vm: &Vm,
    ctx: &RequestCtx,
    proc_: *mut mruby_sys::RProc,
) -> Result<ScriptRun, ScriptFailure> {
    ctx.in_fiber.set(true);
    let result = start(vm, proc_, true);
    ctx.in_fiber.set(false);
    after_run(r, vm, ctx, result)
}

/// Resumes the waiting script of `r` (the caller installed its host).
pub(crate) fn resume_script(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Result<ScriptRun, ScriptFailure> {
    globals::put_back(vm, ctx);
    ctx.in_fiber.set(true);
    let result = vm.mrb().arena_scope(|| {
        resume(vm, ctx.fiber.get()).map(|completion| match completion {
            // only the Fiber (GC-registered) is kept past the arena
            Completion::Suspended(fiber) => Completion::Suspended(fiber),
            Completion::Finished(_) => Completion::Finished(vm.mrb().nil()),
        })
    });
    ctx.in_fiber.set(false);
    if globals::watch(r, vm, ctx).is_err() {
        return Ok(ScriptRun::Failed);
    }
    after_run(r, vm, ctx, result)
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
            globals::hold_aside(vm, ctx);
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
        globals::drop_held(&*cleanup.vm, ctx);
    }
}

fn not_waitable() -> String {
    String::from(
        "Nginx::Async can only wait in a rewrite, access or content handler (the handler's script must mention Nginx::Async)",
    )
}

/// `Nginx::Async.sleep(ms)`: arms the timer; the Ruby side then yields.
pub(crate) fn start_sleep(r: *mut ngx_http_request_t, ctx: &RequestCtx, ms: u64) -> Result<(), String> {
    if !ctx.in_fiber.get() {
        return Err(not_waitable());
    }
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
        ngx_add_timer(ctx.timer.get(), ms as ngx_msec_t);
    }
    ctx.async_pending.set(true);
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

/// `Nginx::Async::HTTP.sub_request(path, query)`: starts an in-memory subrequest.
pub(crate) fn start_subrequest(
    r: *mut ngx_http_request_t,
    ctx: &RequestCtx,
    path: &[u8],
    query: Option<&[u8]>,
) -> Result<(), String> {
    if !ctx.in_fiber.get() {
        return Err(not_waitable());
    }
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
    ctx.async_pending.set(true);
    Ok(())
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
