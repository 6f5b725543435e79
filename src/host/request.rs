//! The request host: the HTTP request a script runs for, and the state the
//! request keeps across its scripts ([`RequestCtx`]): the buffered `rputs`
//! output and the status a script chose, the redirect, and the fields the
//! body filter, the waits and the held-aside globals use (their logic is in
//! `filter.rs`, `wait.rs` and `globals.rs`).

use core::cell::Cell;
use core::ptr;

use ngx::ffi::*;

use super::Context;

/// Where reading the request body stands; zeroed memory is `NotStarted`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    NotStarted = 0,
    /// Reading asynchronously; the phase handler returned NGX_DONE.
    Waiting = 1,
    /// Waiting, and the handler that started it was the content handler.
    WaitingInContent = 2,
    Done = 3,
}

/// Where the body filter stands; zeroed memory is `Off`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FilterState {
    Off = 0,
    /// Buffering the response body.
    Collecting = 1,
    /// The script ran and the new body went out.
    Done = 2,
    /// The script failed: the error page passes through untouched.
    Bypass = 3,
}

/// Per-request module context, allocated zeroed from the request pool.
///
/// Every field is a `Cell`: the phase handler and the Ruby methods it runs
/// reach the same context at once, so it is only ever shared (`&`), never
/// borrowed exclusively. All-zero bytes are a valid initial state.
#[repr(C)]
pub struct RequestCtx {
    /// The request this context belongs to (set when the phases create it).
    pub request: Cell<*mut ngx_http_request_t>,
    /// Body written with `rputs`/`echo`, not yet sent.
    pub out_head: Cell<*mut ngx_chain_t>,
    pub out_tail: Cell<*mut ngx_chain_t>,
    pub out_len: Cell<usize>,
    /// Status chosen with `Nginx.return` (valid when `status_set`).
    pub status: Cell<ngx_int_t>,
    pub status_set: Cell<bool>,
    /// URI for an internal redirect requested with `Nginx.redirect`.
    pub redirect_uri: Cell<ngx_str_t>,
    /// Request body reading (`mruby_enable_read_request_body`).
    pub body: Cell<BodyState>,
    /// Body filter: state, the collected body, the replacement (pool-owned Vecs).
    pub filter: Cell<FilterState>,
    pub filter_body: Cell<*mut Vec<u8>>,
    pub filter_output: Cell<*mut Vec<u8>>,
    /// Nginx::Async: a script of this phase waits in `fiber` (GC-registered);
    /// `async_pending` until its timer fires or its subrequest completes.
    pub suspended: Cell<bool>,
    pub async_pending: Cell<bool>,
    /// The execution context of the handler's Fiber while its script runs
    /// (NULL otherwise): a wait checks that it would yield to the handler.
    pub fiber_context: Cell<*mut mruby_sys::mrb_context>,
    /// The VM the waiting script runs in (for the wait cleanup).
    pub vm: Cell<*const crate::vm::Vm>,
    /// What the pending wait is (what its `Fiber.yield` will return).
    pub waiting_for: Cell<super::wait::Waiting>,
    /// Which of the phase's scripts (0 inline, 1 file) is running.
    pub script_index: Cell<u8>,
    pub fiber: Cell<mruby_sys::mrb_value>,
    pub timer: Cell<*mut ngx_event_t>,
    pub sub_response: Cell<*mut super::wait::SubResponse>,
    pub wait_cleanup_registered: Cell<bool>,
    /// The request's globals while it is outside the VM (`globals.rs`).
    pub held_globals: Cell<*mut super::globals::HeldGlobals>,
    /// `mruby_set`: the script code (its address) whose script waits in
    /// `fiber`, or 0.
    pub set_waiting: Cell<usize>,
    /// `mruby_set`: values of scripts that finished after waiting, by code
    /// address. When a wait ends the rewrite codes run again from the
    /// start; a script that waited gives its value instead of running again.
    pub set_values: Cell<*mut Vec<(usize, ngx_str_t)>>,
}

/// The request host: the request, its context, and where the script runs.
pub struct RequestHost {
    r: *mut ngx_http_request_t,
    ctx: *const RequestCtx,
    context: Context,
}

impl RequestHost {
    /// A host for `r` in `context`; `ctx` is the request's module context.
    pub fn new(r: *mut ngx_http_request_t, ctx: &RequestCtx, context: Context) -> RequestHost {
        RequestHost { r, ctx, context }
    }

    pub fn context(&self) -> Context {
        self.context
    }

    pub fn as_ptr(&self) -> *mut ngx_http_request_t {
        self.r
    }

    /// Runs `f` with the request borrowed for `f` only. The `&mut` cannot
    /// escape (its lifetime is `f`'s), so it is never held across a later
    /// call back into Ruby, where another method could borrow the same
    /// request again; `f` itself must not call Ruby (copy out what it needs
    /// and build Ruby values after).
    #[inline]
    pub fn with_request<R>(&self, f: impl FnOnce(&mut ngx_http_request_t) -> R) -> R {
        // SAFETY: a request host is installed only while a script runs for
        // this live request (see `host::enter`); workers are single-threaded,
        // and this borrow ends before `f` returns.
        f(unsafe { &mut *self.r })
    }

    /// The request's state kept across its scripts.
    pub fn state<'a>(&self) -> &'a RequestCtx {
        // SAFETY: the context lives in the request pool, as long as the request.
        unsafe { &*self.ctx }
    }

    /// The request's connection log.
    pub fn log(&self) -> *mut ngx_log_t {
        // SAFETY: the request and its connection are live while it runs.
        unsafe { (*(*self.r).connection).log }
    }
}

impl RequestCtx {
    /// Appends a copy of `bytes` to the pending body.
    pub(crate) fn append_output(&self, pool: *mut ngx_pool_t, bytes: &[u8]) -> Result<(), ()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // One pool allocation holds the chain link, the buffer header and
        // the bytes (this runs for every rputs).
        let header = core::mem::size_of::<ngx_chain_t>() + core::mem::size_of::<ngx_buf_t>();
        // SAFETY: pool is the live request pool; the three parts do not overlap
        // and the headers are suitably aligned at the start of the block.
        unsafe {
            let block = ngx_palloc(pool, header + bytes.len()) as *mut u8;
            if block.is_null() {
                return Err(());
            }
            let link = block as *mut ngx_chain_t;
            let buf = block.add(core::mem::size_of::<ngx_chain_t>()) as *mut ngx_buf_t;
            let data = block.add(header);
            ptr::write_bytes(buf, 0, 1);
            ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
            (*buf).start = data;
            (*buf).pos = data;
            (*buf).last = data.add(bytes.len());
            (*buf).end = (*buf).last;
            (*buf).set_temporary(1);
            (*link).buf = buf;
            (*link).next = ptr::null_mut();
            if self.out_tail.get().is_null() {
                self.out_head.set(link);
            } else {
                (*self.out_tail.get()).next = link;
            }
            self.out_tail.set(link);
        }
        self.out_len.set(self.out_len.get() + bytes.len());
        Ok(())
    }

    pub fn has_output(&self) -> bool {
        !self.out_head.get().is_null()
    }

    /// Forgets pending output (after an error, or once sent).
    pub fn discard_output(&self) {
        self.out_head.set(ptr::null_mut());
        self.out_tail.set(ptr::null_mut());
        self.out_len.set(0);
    }
}
