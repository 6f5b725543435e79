//! The stream host: one stream session while its `mruby_stream` script runs
//! (or waits), as `Nginx::Stream::Connection` and `Nginx::Stream::Async`
//! see it. The handler that runs the script is `stream/access.rs`; it
//! allocates this state in the session pool and installs it with
//! `host::enter(&Host::Stream(state), ..)`.
//!
//! The session's script waits like a request's (`wait.rs`): one Rust call
//! checks the script can yield, registers the session cleanup, arms the
//! timer and yields ([`sleep`]); the timer runs the session's phases again
//! and the handler resumes the Fiber. The globals the script creates are
//! held aside while it waits and removed when it ends.

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;

use mruby_sys::{mrb_context, mrb_value};
use ngx::ffi::*;

use crate::vm::run::yield_blocker;
use crate::vm::{Mrb, RubyError, RubyResult, Vm};

/// The upstream server a session's script chose (`upstream_server=`);
/// lives in the session pool.
pub struct ChosenServer {
    /// The upstream block whose servers it replaces for this session.
    pub upstream: *mut ngx_stream_upstream_srv_conf_t,
    pub sockaddr: *mut sockaddr,
    pub socklen: socklen_t,
    /// The address as the script gave it (what `upstream_server` returns
    /// and `$upstream_addr` shows).
    pub name: ngx_str_t,
}

/// One session as its script sees it. Every field is a `Cell`: the handler
/// and the Ruby methods it runs reach it at once. Allocated zeroed in the
/// session pool, then [`StreamSession::init`] sets what zero is not.
#[repr(C)]
pub struct StreamSession {
    session: Cell<*mut ngx_stream_session_t>,
    /// The VM the script runs in (outlives the session).
    vm: Cell<*const Vm>,
    /// What the ACCESS handler returns: `Nginx::Stream::DECLINED` unless the
    /// script set `stream_status`.
    pub status: Cell<ngx_int_t>,
    /// NULL, or the server chosen with `upstream_server=`.
    pub chosen: Cell<*mut ChosenServer>,
    /// The context of the script's Fiber while it runs in it (NULL
    /// otherwise): a wait must be made from there.
    pub fiber_context: Cell<*mut mrb_context>,
    /// A timer is armed and the Fiber waits for it.
    pub pending: Cell<bool>,
    /// The script's Fiber is suspended (GC-registered in `fiber`).
    pub suspended: Cell<bool>,
    pub fiber: Cell<mrb_value>,
    pub timer: Cell<*mut ngx_event_t>,
    /// The script's globals, held aside while it waits (GC-registered Hash).
    held_globals: Cell<mrb_value>,
    holding: Cell<bool>,
    /// The end-of-session cleanup is registered on the session pool.
    cleanup_registered: Cell<bool>,
}

impl StreamSession {
    /// Sets up a zeroed state for session `s`, whose scripts run in `vm`.
    pub fn init(&self, s: *mut ngx_stream_session_t, vm: &Vm) {
        self.session.set(s);
        self.vm.set(vm);
        self.status.set(NGX_DECLINED as ngx_int_t);
    }

    pub fn session(&self) -> *mut ngx_stream_session_t {
        self.session.get()
    }

    pub fn connection(&self) -> *mut ngx_connection_t {
        // SAFETY: the session is live while its state is used.
        unsafe { (*self.session()).connection }
    }

    /// The connection's log (nginx adds client and server to each line).
    pub fn log(&self) -> *mut ngx_log_t {
        // SAFETY: as above.
        unsafe { (*self.connection()).log }
    }

    pub fn pool(&self) -> *mut ngx_pool_t {
        // SAFETY: as above.
        unsafe { (*self.connection()).pool }
    }

    fn vm(&self) -> &Vm {
        // SAFETY: set by init; the VM outlives every session of its cycle.
        unsafe { &*self.vm.get() }
    }

    /// Records `server` as this session's choice for its upstream.
    pub fn choose(
        &self,
        upstream: *mut ngx_stream_upstream_srv_conf_t,
        sockaddr: *mut sockaddr,
        socklen: socklen_t,
        name: ngx_str_t,
    ) -> Result<(), RubyError> {
        // SAFETY: the choice lives in the session pool, like this state.
        unsafe {
            let chosen = ngx_palloc(self.pool(), core::mem::size_of::<ChosenServer>()) as *mut ChosenServer;
            if chosen.is_null() {
                return Err(RubyError::runtime("out of memory"));
            }
            chosen.write(ChosenServer { upstream, sockaddr, socklen, name });
            self.chosen.set(chosen);
        }
        Ok(())
    }

    /// The server this session chose for `upstream`, if it chose one.
    pub fn chosen_for(&self, upstream: *mut ngx_stream_upstream_srv_conf_t) -> Option<&ChosenServer> {
        // SAFETY: chosen is NULL or a ChosenServer in the live session's pool.
        unsafe { self.chosen.get().as_ref() }.filter(|chosen| chosen.upstream == upstream)
    }
}

/// After the script ran or stepped aside to wait: its globals leave the VM.
/// A finished script's are removed (the session runs no more Ruby, and a
/// proxied session may stay open while others run); a waiting script's
/// are held aside until it resumes.
pub fn take_out_globals(state: &StreamSession, waiting: bool) {
    let vm = state.vm();
    if !vm.has_request_globals() {
        return;
    }
    if !waiting {
        vm.remove_request_globals();
        return;
    }
    if let Some(held) = vm.stash_request_globals() {
        state.held_globals.set(held);
        state.holding.set(true);
    }
}

/// The waiting script resumes: its globals go back into the VM.
pub fn put_back_globals(state: &StreamSession) {
    if state.holding.replace(false) {
        state.vm().restore_request_globals(state.held_globals.get());
    }
}

/// Keeps the suspended script's Fiber alive until it resumes or the session ends.
pub fn keep_fiber(state: &StreamSession, fiber: mrb_value) {
    if !state.suspended.replace(true) {
        state.vm().mrb().gc_register(fiber);
        state.fiber.set(fiber);
    }
}

/// Lets the GC have the script's Fiber again.
pub fn release_fiber(state: &StreamSession) {
    if state.suspended.replace(false) {
        state.vm().mrb().gc_unregister(state.fiber.get());
    }
}

/// Disarms the sleep timer if it is armed.
pub fn disarm_timer(state: &StreamSession) {
    let timer = state.timer.get();
    // SAFETY: the timer event lives in the session pool with the state.
    unsafe {
        if !timer.is_null() && (*timer).timer_set() != 0 {
            ngx_del_timer(timer);
        }
    }
    state.pending.set(false);
}

/// `Nginx::Stream::Async.sleep(ms)`: the one way a session's script waits.
/// Checks the script can yield to its handler from here, registers the
/// session cleanup, arms the timer and yields, in this one call (a C method
/// returning `mrb_fiber_yield`, as `Nginx::Async.sleep`). When it cannot
/// yield nothing is armed and the script gets a FiberError saying why.
pub fn sleep(mrb: Mrb, state: &StreamSession, ms: ngx_msec_t) -> RubyResult {
    if let Some(reason) = yield_blocker(mrb, state.fiber_context.get()) {
        return Err(RubyError::new(
            "FiberError",
            format!(
                "Nginx::Stream::Async.sleep can only wait in the mruby_stream script's own Fiber \
                 (the script must name Nginx::Stream::Async); it was called {reason}"
            ),
        ));
    }
    register_cleanup(state).map_err(|()| RubyError::runtime("out of memory"))?;
    arm_timer(state, ms).map_err(RubyError::runtime)?;
    state.pending.set(true);
    // SAFETY: live VM; yield_blocker checked what mrb_fiber_yield would
    // raise for, so this switches to the resumer; the value goes straight back to mruby.
    Ok(unsafe { mruby_sys::mrb_fiber_yield(mrb.as_ptr(), 0, ptr::null()) })
}

fn arm_timer(state: &StreamSession, ms: ngx_msec_t) -> Result<(), String> {
    // SAFETY: the event lives in the session pool; the session cleanup
    // (registered before this) removes it from the timer tree first.
    unsafe {
        if state.timer.get().is_null() {
            let ev = ngx_pcalloc(state.pool(), core::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
            if ev.is_null() {
                return Err(String::from("out of memory"));
            }
            (*ev).handler = Some(sleep_done);
            (*ev).data = ptr::from_ref(state).cast_mut().cast();
            (*ev).log = state.log();
            state.timer.set(ev);
        }
        ngx_add_timer(state.timer.get(), ms);
    }
    Ok(())
}

/// The sleep is over: run the session's phases again; the ACCESS handler
/// is called again and resumes the script.
unsafe extern "C" fn sleep_done(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is the live session's state (the session
    // cleanup removes the timer before the session goes).
    let state = unsafe { &*((*ev).data as *const StreamSession) };
    state.pending.set(false);
    // SAFETY: the session is live; this is what nginx's own handlers do.
    unsafe { ngx_stream_core_run_phases(state.session()) };
}

/// However the session ends (closed by either side, aborted, timed out),
/// its timer goes and its Fiber and held globals are released.
fn register_cleanup(state: &StreamSession) -> Result<(), ()> {
    if state.cleanup_registered.get() {
        return Ok(());
    }
    // SAFETY: the pool is the session's; the cleanup runs before it frees the state.
    unsafe {
        let cleanup = ngx_pool_cleanup_add(state.pool(), 0);
        if cleanup.is_null() {
            return Err(());
        }
        (*cleanup).handler = Some(session_cleanup);
        (*cleanup).data = ptr::from_ref(state).cast_mut().cast();
    }
    state.cleanup_registered.set(true);
    Ok(())
}

unsafe extern "C" fn session_cleanup(data: *mut c_void) {
    // SAFETY: data is the session's state (same pool, freed after its cleanups).
    let state = unsafe { &*(data as *const StreamSession) };
    disarm_timer(state);
    release_fiber(state);
    if state.holding.replace(false) {
        state.vm().mrb().gc_unregister(state.held_globals.get());
    }
}
