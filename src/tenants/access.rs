//! The handler of `tenant_runner on`: owner checks, then a runner from the
//! supervisor while the request waits as an nginx event. It runs in the
//! PRECONTENT phase, after every access check and every Ruby handler
//! before content (one of which may choose the request's resource class).

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use super::link::{self, Acquired, Reply, Spawn};
use super::owner::{self, Refusal};
use super::usage::{self, CpuSample};
use super::HttpTenantsModule;
use crate::ngx_util::{log, pool_str};
use tenant_protocol::held::KEEP_IDLE_MS;

const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;
const DONE: ngx_int_t = NGX_DONE as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// How long a request waits for the supervisor beyond `tenant_queue_timeout`
/// before it gives up on its own.
const ANSWER_GRACE_MS: u64 = 2000;

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Waiting,
    Ready,
    Failed,
}

/// Per-request state, in the request pool. Shared (`&`) between the
/// handler, the link and the variables, hence `Cell`s.
pub struct TenantCtx {
    request: *mut ngx_http_request_t,
    /// Posted when the answer is in; also the timer of the wait.
    wake: *mut ngx_event_t,
    state: Cell<State>,
    tag: Cell<u32>,
    /// The handler returned NGX_DONE holding a request reference.
    suspended: Cell<bool>,
    fail_status: Cell<ngx_int_t>,
    runner: Cell<u64>,
    /// How long the worker may keep the runner idle after this request.
    keep_ms: Cell<u64>,
    pub pid: Cell<i32>,
    pub uid: Cell<u32>,
    pub spawn: Cell<Spawn>,
    pub socket: Cell<ngx_str_t>,
    /// The runner's CPU ticks when it was handed over (`usage.rs`).
    cpu_start: Cell<Option<CpuSample>>,
    /// The runner's memory at the hand-over (for `$request_mem_peak_kb`).
    mem_start: Cell<Option<usage::MemSample>>,
    /// The script's path (for `resource_checker`).
    script: Cell<ngx_str_t>,
}

impl TenantCtx {
    /// Called by the link: records the answer and wakes the request.
    pub fn deliver(&self, reply: Reply) {
        if self.state.get() != State::Waiting {
            return;
        }
        match reply {
            Reply::Ok { runner, pid, uid, spawn, socket, .. } => {
                use std::os::unix::ffi::OsStrExt;
                self.hand_over(runner, pid, uid, spawn, socket.as_os_str().as_bytes());
            }
            Reply::GiveBack { .. } => return,
            // the answer to a Cgroup#attach line, which the link never sends
            Reply::Done { .. } => {
                // SAFETY: as above.
                let c_log = unsafe { (*(*self.request).connection).log };
                log(c_log, NGX_LOG_ERR, "tenant_runner: the supervisor answered DONE to a request for a runner");
                self.fail(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            }
            Reply::Err { status, reason, .. } => {
                // SAFETY: as above.
                let c_log = unsafe { (*(*self.request).connection).log };
                log(c_log, NGX_LOG_INFO, &format!("tenant_runner: the supervisor answered {status} ({reason})"));
                let status = if (400..600).contains(&status) { status } else { 500 };
                self.fail(status as ngx_int_t);
            }
        }
        self.post_wake();
    }

    /// The request has runner `runner` (the cleanup gives it back).
    fn hand_over(&self, runner: u64, pid: i32, uid: u32, spawn: Spawn, socket: &[u8]) {
        // SAFETY: request is live while its ctx is (same pool).
        let copied = pool_str(unsafe { (*self.request).pool }, socket);
        self.runner.set(runner);
        self.pid.set(pid);
        self.uid.set(uid);
        self.spawn.set(spawn);
        // SAFETY: request is live while its ctx is (same pool).
        if crate::resources::accounting_wanted(unsafe { &*self.request }) {
            self.cpu_start.set(usage::cpu_sample(pid));
            self.mem_start.set(usage::mem_sample(pid));
        }
        self.state.set(State::Ready);
        match copied {
            Some(s) => self.socket.set(s),
            // out of memory: the runner goes back with the cleanup
            None => self.fail(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t),
        }
    }

    /// The request answers `status`. A runner already handed over stays
    /// `Ready`, so the cleanup still gives it back.
    fn fail(&self, status: ngx_int_t) {
        self.fail_status.set(status);
        if self.state.get() != State::Ready {
            self.state.set(State::Failed);
        }
    }

    fn post_wake(&self) {
        // SAFETY: the wake event lives in the request pool; the cleanup unposts it.
        unsafe {
            if (*self.wake).timer_set() != 0 {
                ngx_del_timer(self.wake);
            }
            ngx_post_event(self.wake, ptr::addr_of_mut!(ngx_posted_events));
        }
    }

    /// The runner socket, when this request has one.
    pub fn ready(&self) -> bool {
        self.state.get() == State::Ready && self.fail_status.get() == 0
    }
}

fn ctx_of<'a>(r: &ngx_http_request_t) -> Option<&'a TenantCtx> {
    let index = HttpTenantsModule::module().ctx_index;
    // SAFETY: r->ctx has one slot per HTTP module; ours holds a TenantCtx or NULL.
    unsafe { (*r.ctx.add(index) as *const TenantCtx).as_ref() }
}

/// The context of `r`, for the variables.
pub fn existing_ctx<'a>(r: &ngx_http_request_t) -> Option<&'a TenantCtx> {
    ctx_of(r)
}

/// The precontent handler.
///
/// # Safety
/// Called by nginx with a live request.
pub(super) unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { &mut *r };
    let Some(lcf) = HttpTenantsModule::location_conf(r) else {
        return DECLINED;
    };
    if lcf.runner != Some(true) || !ptr::eq(r, r.main) {
        return DECLINED;
    }
    if let Some(ctx) = ctx_of(r) {
        return resume(r, ctx);
    }
    start(r, lcf.cgi == Some(true), lcf.ruby)
}

/// Called again by the phase engine after the wake event.
fn resume(r: &mut ngx_http_request_t, ctx: &TenantCtx) -> ngx_int_t {
    if ctx.suspended.replace(false) {
        // SAFETY: r->main is live; start() took this reference.
        unsafe {
            let main = r.main;
            (*main).set_count((*main).count() - 1);
        }
    }
    match ctx.state.get() {
        State::Waiting => {
            ctx.suspended.set(true);
            // SAFETY: as above; the reference is given back on the next resume.
            unsafe { (*r.main).set_count((*r.main).count() + 1) };
            DONE
        }
        _ if ctx.fail_status.get() != 0 => ctx.fail_status.get(),
        _ => DECLINED,
    }
}

fn start(r: &mut ngx_http_request_t, cgi: bool, ruby: bool) -> ngx_int_t {
    // SAFETY: r->connection is live.
    let c_log = unsafe { (*r.connection).log };
    let Some(main) = HttpTenantsModule::main_conf(r) else {
        return DECLINED;
    };
    let mut path = ngx_str_t { len: 0, data: ptr::null_mut() };
    let mut root_len: usize = 0;
    // SAFETY: maps the URI into a pool string; `last` points at its NUL.
    let last = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root_len, 0) };
    if last.is_null() {
        return ERROR;
    }
    // SAFETY: path.data..last is the mapped path.
    let script = unsafe { core::slice::from_raw_parts(path.data, last.offset_from(path.data) as usize) };
    let docroot = &script[..root_len.min(script.len())];
    let docroot = match docroot.strip_suffix(b"/") {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => docroot,
    };
    let shown = String::from_utf8_lossy(script);
    let owner = match owner::check(script, docroot, main.min_uid(), main.min_gid()) {
        Ok(owner) => owner,
        Err(Refusal::Missing) => return NGX_HTTP_NOT_FOUND as ngx_int_t,
        Err(Refusal::Rule(rule)) => {
            log(c_log, NGX_LOG_ERR, &format!("tenant_runner: refused \"{shown}\": {rule}"));
            return NGX_HTTP_FORBIDDEN as ngx_int_t;
        }
    };
    let kind = if cgi {
        "cgi"
    } else {
        match main.interpreter_kind(script) {
            Some(kind) => kind,
            // Ruby runs in the owner's own VM, never in the worker's
            None if ruby || script.ends_with(b".rb") => "ruby",
            None => {
                log(
                    c_log,
                    NGX_LOG_ERR,
                    &format!("tenant_runner: refused \"{shown}\": no tenant_interpreter for this file"),
                );
                return NGX_HTTP_FORBIDDEN as ngx_int_t;
            }
        }
    };
    let Some(ctx) = new_ctx(r) else {
        return ERROR;
    };
    if let Some(copy) = pool_str(r.pool, script) {
        ctx.script.set(copy);
    }
    // a request in a resource class: its runner goes back to the supervisor
    // at the end (which moves it back to its own group), not kept; the
    // class is final from here on ($resource_class, the checker line)
    let class = crate::resources::fix_request_class(r).map(|(class, _)| class.name.as_str());
    let keep_ms = if class.is_some() { 0 } else { KEEP_IDLE_MS.min(main.idle_timeout_ms() / 2) };
    ctx.keep_ms.set(keep_ms);
    match link::acquire(ctx, kind, owner.uid, owner.gid, docroot, class) {
        Ok(Acquired::Kept(runner)) => {
            // no round trip: the worker held an idle runner of this owner, site and kind
            ctx.hand_over(runner.id, runner.pid, runner.uid, Spawn::Hit, &runner.socket);
            return match ctx.fail_status.get() {
                0 => DECLINED,
                status => status,
            };
        }
        Ok(Acquired::Asked(tag)) => ctx.tag.set(tag),
        Err(why) => {
            log(c_log, NGX_LOG_ERR, &format!("tenant_runner: no runner for \"{shown}\": {why}"));
            ctx.state.set(State::Failed);
            ctx.fail_status.set(NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t);
            return NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t;
        }
    }
    // SAFETY: the wake event is ours, in the request pool.
    unsafe { ngx_add_timer(ctx.wake, (main.queue_timeout_ms() + ANSWER_GRACE_MS) as ngx_msec_t) };
    ctx.suspended.set(true);
    // SAFETY: r->main is live; resume() gives this reference back.
    unsafe { (*r.main).set_count((*r.main).count() + 1) };
    DONE
}

/// Allocates the context, its wake event, and the cleanup that undoes
/// whatever the request still holds when it ends.
fn new_ctx<'a>(r: &mut ngx_http_request_t) -> Option<&'a TenantCtx> {
    // SAFETY: all allocations come from the request pool, which outlives them;
    // the cleanup is registered before anything needs undoing.
    unsafe {
        let pool = r.pool;
        let wake = ngx_pcalloc(pool, core::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
        let cleanup = ngx_pool_cleanup_add(pool, core::mem::size_of::<TenantCtx>());
        if wake.is_null() || cleanup.is_null() {
            return None;
        }
        (*wake).handler = Some(on_wake);
        (*wake).data = (r as *mut ngx_http_request_t).cast();
        (*wake).log = (*r.connection).log;
        let ctx = (*cleanup).data as *mut TenantCtx;
        ctx.write(TenantCtx {
            request: r,
            wake,
            state: Cell::new(State::Waiting),
            tag: Cell::new(0),
            suspended: Cell::new(false),
            fail_status: Cell::new(0),
            runner: Cell::new(0),
            keep_ms: Cell::new(0),
            pid: Cell::new(0),
            uid: Cell::new(0),
            spawn: Cell::new(Spawn::Hit),
            socket: Cell::new(ngx_str_t { len: 0, data: ptr::null_mut() }),
            cpu_start: Cell::new(None),
            mem_start: Cell::new(None),
            script: Cell::new(ngx_str_t { len: 0, data: ptr::null_mut() }),
        });
        (*cleanup).handler = Some(cleanup_ctx);
        let index = HttpTenantsModule::module().ctx_index;
        *r.ctx.add(index) = ctx.cast();
        Some(&*ctx)
    }
}

/// The wake event: the answer is in, or the wait timed out.
unsafe extern "C" fn on_wake(ev: *mut ngx_event_t) {
    // SAFETY: the event's data is its live request (the cleanup removes the event first).
    let r = unsafe { (*ev).data as *mut ngx_http_request_t };
    // SAFETY: as above.
    let Some(ctx) = ctx_of(unsafe { &*r }) else {
        return;
    };
    // SAFETY: ev is live.
    if unsafe { (*ev).timedout() } != 0 {
        // SAFETY: as above.
        unsafe { (*ev).set_timedout(0) };
        if ctx.state.get() == State::Waiting {
            link::cancel(ctx.tag.get());
            // SAFETY: r is live.
            let c_log = unsafe { (*(*r).connection).log };
            log(c_log, NGX_LOG_ERR, "tenant_runner: the supervisor did not answer in time");
            ctx.state.set(State::Failed);
            ctx.fail_status.set(NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t);
        }
    }
    // SAFETY: r is live; this is what nginx's own event handlers do.
    unsafe {
        let c = (*r).connection;
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
    }
}

/// Log phase, before the access log: what the runner used for this request,
/// from the kernel's counters (`usage.rs`), goes to `$request_cpu_*`,
/// `$request_mem_peak_kb`, the per-host usage and `resource_checker`. A
/// request the runner did not serve (refused, failed before hand-over) has none.
pub(super) unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { &mut *r };
    let Some(ctx) = ctx_of(r) else {
        return NGX_OK as ngx_int_t;
    };
    if ctx.state.get() != State::Ready {
        return NGX_OK as ngx_int_t;
    }
    let Some(start) = ctx.cpu_start.take() else {
        return NGX_OK as ngx_int_t;
    };
    let pid = ctx.pid.get();
    let Some(end) = usage::cpu_sample(pid) else {
        return NGX_OK as ngx_int_t;
    };
    let peak_kb = usage::mem_sample(pid).map_or(0, |end| usage::request_peak_kb(ctx.mem_start.get(), end));
    let figures = usage::figures(start, end, peak_kb);
    let script = ctx.script.get();
    let script = if script.data.is_null() {
        String::new()
    } else {
        // SAFETY: a copy in the request pool, len bytes long.
        String::from_utf8_lossy(unsafe { core::slice::from_raw_parts(script.data, script.len) }).into_owned()
    };
    crate::resources::record_request(r, figures, ctx.uid.get(), &script);
    NGX_OK as ngx_int_t
}

/// However the request ends: no timer or posted event left, an unanswered
/// question withdrawn, a held runner given back.
unsafe extern "C" fn cleanup_ctx(data: *mut c_void) {
    // SAFETY: data is the TenantCtx written by new_ctx; the pool is not freed yet.
    let ctx = unsafe { &*(data as *const TenantCtx) };
    // SAFETY: the wake event lives in the same pool.
    unsafe {
        if (*ctx.wake).timer_set() != 0 {
            ngx_del_timer(ctx.wake);
        }
        if (*ctx.wake).posted() != 0 {
            ngx_delete_posted_event(ctx.wake);
        }
    }
    match ctx.state.get() {
        State::Waiting => link::cancel(ctx.tag.get()),
        State::Ready => {
            // SAFETY: the request lives in the pool whose cleanups are running, not yet freed.
            let status = unsafe { (*ctx.request).headers_out.status };
            let failed = matches!(status as u32, NGX_HTTP_BAD_GATEWAY | NGX_HTTP_GATEWAY_TIME_OUT)
                // SAFETY: as above; the connection outlives its requests.
                || unsafe { (*(*ctx.request).connection).error() } != 0;
            link::finish(ctx.runner.get(), failed, ctx.keep_ms.get());
        }
        State::Failed => {}
    }
}
