//! Per-request state: the current request for the Ruby API, the buffered
//! `rputs` output, the status a script chose, and the end-of-request cleanup
//! that removes the globals the request created.

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use ngx::ffi::*;

use crate::vm::Vm;
use crate::HttpMrubyModule;
use ngx::http::HttpModule;

/// The request whose script is running (nginx workers are single-threaded;
/// the atomic only makes the global safe Rust).
static CURRENT_REQUEST: AtomicPtr<ngx_http_request_t> = AtomicPtr::new(ptr::null_mut());

/// Sets the current request for the Ruby API; restores the previous on drop.
pub struct CurrentRequest {
    previous: *mut ngx_http_request_t,
}

impl CurrentRequest {
    pub(crate) fn enter(r: *mut ngx_http_request_t) -> CurrentRequest {
        CurrentRequest { previous: CURRENT_REQUEST.swap(r, Ordering::Relaxed) }
    }
}

impl Drop for CurrentRequest {
    fn drop(&mut self) {
        CURRENT_REQUEST.store(self.previous, Ordering::Relaxed);
    }
}

/// The request a Ruby method is running for, if any.
pub(crate) fn current_request() -> Option<*mut ngx_http_request_t> {
    let r = CURRENT_REQUEST.load(Ordering::Relaxed);
    (!r.is_null()).then_some(r)
}

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
    /// Set while a Fiber script runs, so Async methods know they may yield.
    pub in_fiber: Cell<bool>,
    /// Which of the phase's scripts (0 inline, 1 file) is running.
    pub script_index: Cell<u8>,
    pub fiber: Cell<mruby_sys::mrb_value>,
    pub timer: Cell<*mut ngx_event_t>,
    pub sub_response: Cell<*mut super::wait::SubResponse>,
    pub wait_cleanup_registered: Cell<bool>,
    /// The request's globals, held aside while it waits (a GC-registered Hash).
    pub stashed_globals: Cell<mruby_sys::mrb_value>,
    pub has_stash: Cell<bool>,
    /// Whether the globals cleanup is registered on the request pool.
    pub cleanup_registered: Cell<bool>,
}

/// The module ctx of `r`, created on first use.
pub(crate) fn request_ctx<'a>(r: *mut ngx_http_request_t, _vm: &Vm) -> Option<&'a RequestCtx> {
    let index = HttpMrubyModule::module().ctx_index;
    // SAFETY: r is a live request; ctx is an array of per-module pointers.
    unsafe {
        let slot = (*r).ctx.add(index);
        if !(*slot).is_null() {
            return Some(&*((*slot) as *const RequestCtx));
        }
        let ctx = ngx_pcalloc((*r).pool, core::mem::size_of::<RequestCtx>()) as *mut RequestCtx;
        if ctx.is_null() {
            return None;
        }
        *slot = ctx.cast();
        Some(&*ctx)
    }
}

/// After a script ran: if it created globals, make sure they are removed
/// when the request ends, however it ends. A request that creates none
/// (the common case) pays one comparison, no pool cleanup.
pub(crate) fn watch_globals(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Result<(), ()> {
    if ctx.cleanup_registered.get() || !vm.has_request_globals() {
        return Ok(());
    }
    // SAFETY: r and r->main are live; the VM outlives the request.
    unsafe {
        let cleanup = ngx_pool_cleanup_add((*(*r).main).pool, 0);
        if cleanup.is_null() {
            return Err(());
        }
        (*cleanup).handler = Some(remove_request_globals);
        (*cleanup).data = (vm as *const Vm).cast_mut().cast();
    }
    ctx.cleanup_registered.set(true);
    Ok(())
}

/// The existing ctx of `r` (for the Ruby API, which runs after creation).
pub(crate) fn existing_ctx<'a>(r: *mut ngx_http_request_t) -> Option<&'a RequestCtx> {
    let index = HttpMrubyModule::module().ctx_index;
    // SAFETY: r is a live request; the slot is NULL or our RequestCtx.
    unsafe {
        let ctx = *(*r).ctx.add(index);
        (!ctx.is_null()).then(|| &*(ctx as *const RequestCtx))
    }
}

/// Pool cleanup: runs however the request ends (normal, abort, timeout...).
extern "C" fn remove_request_globals(data: *mut c_void) {
    // SAFETY: data is the cycle's Vm, which outlives every request of the cycle.
    let vm = unsafe { &*(data as *const Vm) };
    vm.remove_request_globals();
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
