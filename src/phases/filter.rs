//! `mruby_output_header_filter` and `mruby_output_body_filter`.
//!
//! A header filter script that fails (raises, or is stopped by the CPU
//! limit) turns the response into a 500: nothing is sent yet, so nginx's
//! error page goes out instead, without our filters.
//!
//! The body filter collects the whole response (any number of buffers,
//! chunked or not), runs the script once with `Nginx::Filter#body`, and
//! sends the result with a correct Content-Length. The header is held back
//! until then, so the length matches the new body (ngx_mruby sent the old
//! header first and could not handle chunked responses, #172, #206).
//!
//! The module sits below nginx's copy filter (`ngx_module_order` in
//! `lib.rs`), which reads file buffers into memory for us (asynchronously
//! where nginx can), so nothing here reads a file in the event loop. A body
//! larger than `mruby_output_body_filter_buffer` (default 16m) is not
//! collected: the request gets a 500 and one error line, like
//! `image_filter_buffer`. A filtered response is sent whole (Range is not
//! applied to it), and a body the script changed loses the original's
//! `ETag` and `Last-Modified`.

use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::module_ctx::{existing_ctx, request_ctx};
use super::run_one;
use crate::conf::HandlerSlot;
use crate::host::filter::new_buffer;
use crate::host::request::{FilterState, RequestCtx};
use crate::host::wait::ScriptRun;
use crate::ngx_util::log;
use crate::HttpMrubyModule;

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

const OK: ngx_int_t = NGX_OK as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// Puts our filters at the top of the chains (postconfiguration).
pub fn install() {
    // SAFETY: postconfiguration runs single-threaded; this is nginx's filter-chain idiom.
    unsafe {
        NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
        NEXT_BODY_FILTER = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter);
    }
}

fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set once in install(); nginx's own header filter ends the chain.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: calling the next filter with the live request.
        Some(next) => unsafe { next(r) },
        None => ERROR,
    }
}

fn next_body(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: as above.
    match unsafe { NEXT_BODY_FILTER } {
        // SAFETY: calling the next filter with the live request and chain.
        Some(next) => unsafe { next(r, chain) },
        None => ERROR,
    }
}

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let request = unsafe { &mut *r };
    let Some(loc) = HttpMrubyModule::location_conf(request) else {
        return next_header(r);
    };
    let header_scripts = loc.scripts(HandlerSlot::HeaderFilter);
    let body_scripts = loc.scripts(HandlerSlot::BodyFilter);
    let has_header = header_scripts.inline.is_some() || header_scripts.file.is_some();
    let has_body = body_scripts.inline.is_some() || body_scripts.file.is_some();
    if !has_header && !has_body {
        return next_header(r);
    }
    let Some(vm) = HttpMrubyModule::main_conf(request).and_then(|main| main.vm.as_deref()) else {
        return next_header(r);
    };
    let Some(ctx) = request_ctx(r) else {
        return ERROR;
    };
    if ctx.filter.get() == FilterState::Bypass {
        return next_header(r);
    }
    if has_header {
        for script in [&header_scripts.inline, &header_scripts.file].into_iter().flatten() {
            let run = run_one(r, vm, script, loc.cache(), HandlerSlot::HeaderFilter, ctx, false);
            if !matches!(run, ScriptRun::Done) {
                // output written from a filter has nowhere to go
                ctx.discard_output();
                return header_script_failed(r, ctx);
            }
        }
        ctx.discard_output();
    }
    let head = request.method == NGX_HTTP_HEAD as ngx_uint_t;
    if has_body && request.header_only() == 0 && !head && ctx.filter.get() == FilterState::Off {
        let limit = loc.filter_buffer();
        if request.headers_out.content_length_n > limit as off_t {
            return too_large(r, ctx, request.headers_out.content_length_n as usize, limit);
        }
        let Some(collected) = new_buffer(request.pool) else {
            return ERROR;
        };
        ctx.filter_body.set(collected);
        ctx.filter.set(FilterState::Collecting);
        request.set_filter_need_in_memory(1);
        // the range body filter sits above us: the new body goes out whole
        request.set_allow_ranges(0);
        // hold the header until the new body's length is known
        return OK;
    }
    next_header(r)
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    let Some(ctx) = existing_ctx(r) else {
        return next_body(r, input);
    };
    match ctx.filter.get() {
        FilterState::Off | FilterState::Bypass => return next_body(r, input),
        FilterState::Done => {
            // the new body is out; swallow anything the handler still sends
            consume(input);
            return OK;
        }
        FilterState::Collecting => {}
    }
    // SAFETY: filter_body was allocated in header_filter for this request.
    let collected = unsafe { &mut *ctx.filter_body.get() };
    // SAFETY: r is live.
    let request = unsafe { &*r };
    let is_main = request.main == r;
    let limit =
        HttpMrubyModule::location_conf(request).map_or(crate::conf::DEFAULT_FILTER_BUFFER, |loc| loc.filter_buffer());
    let finished = match collect(input, collected, is_main, limit) {
        Ok(finished) => finished,
        Err(Collect::TooLarge(size)) => return too_large(r, ctx, size, limit),
        Err(Collect::NotInMemory) => {
            log(
                unsafe_log(r),
                NGX_LOG_ERR,
                "mruby_output_body_filter: a response buffer reached the filter in a file, not in memory",
            );
            return ERROR;
        }
    };
    if !finished {
        return OK;
    }
    ctx.filter.set(FilterState::Done);
    send_filtered(r, ctx)
}

/// Why collecting stopped.
enum Collect {
    /// The body passed the limit; this much had arrived.
    TooLarge(usize),
    /// A file buffer the copy filter should have read into memory.
    NotInMemory,
}

/// Copies every buffer of `input` and marks it consumed; true at the end of the response.
fn collect(input: *mut ngx_chain_t, collected: &mut Vec<u8>, is_main: bool, limit: usize) -> Result<bool, Collect> {
    let mut finished = false;
    let mut link = input;
    // SAFETY: the chain and its buffers are live for this call.
    unsafe {
        while !link.is_null() {
            let buf = (*link).buf;
            let in_memory = (*buf).temporary() != 0 || (*buf).memory() != 0 || (*buf).mmap() != 0;
            if in_memory {
                if !(*buf).pos.is_null() && (*buf).last > (*buf).pos {
                    let len = (*buf).last.offset_from((*buf).pos) as usize;
                    if collected.len() + len > limit {
                        consume(input);
                        return Err(Collect::TooLarge(collected.len() + len));
                    }
                    collected.extend_from_slice(core::slice::from_raw_parts((*buf).pos, len));
                }
            } else if (*buf).in_file() != 0 && (*buf).file_last > (*buf).file_pos {
                // the copy filter above us brings file data into memory
                consume(input);
                return Err(Collect::NotInMemory);
            }
            mark_consumed(buf);
            if (*buf).last_buf() != 0 || (!is_main && (*buf).last_in_chain() != 0) {
                finished = true;
            }
            link = (*link).next;
        }
    }
    Ok(finished)
}

/// The body is larger than `mruby_output_body_filter_buffer`: no script
/// runs, the held header is dropped and the request gets a 500 (the
/// producer gets NGX_ERROR and stops), as `image_filter_buffer` does.
/// A header filter script raised or was stopped (its `[error]` line is
/// logged): the header is not sent yet, so the response becomes a 500,
/// which goes out without running our filters again.
fn header_script_failed(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> ngx_int_t {
    ctx.filter.set(FilterState::Bypass);
    // SAFETY: r is live; we are in its header filter, so nothing is sent yet.
    unsafe {
        ngx_http_filter_finalize_request(
            r,
            ptr::addr_of_mut!(crate::ngx_http_mruby_module),
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        )
    }
}

fn too_large(r: *mut ngx_http_request_t, ctx: &RequestCtx, size: usize, limit: usize) -> ngx_int_t {
    log(
        unsafe_log(r),
        NGX_LOG_ERR,
        &format!(
            "mruby_output_body_filter: the response body ({size} bytes or more) exceeds \
             mruby_output_body_filter_buffer ({limit} bytes); sending 500 without running the filter"
        ),
    );
    ctx.filter.set(FilterState::Bypass);
    // SAFETY: r is live; the header was held back, so an error page can still go out.
    unsafe {
        ngx_http_filter_finalize_request(
            r,
            ptr::addr_of_mut!(crate::ngx_http_mruby_module),
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        )
    }
}

/// Tells the producer a buffer was used up, so it can reuse it.
///
/// # Safety
/// `buf` must be a live buffer of the chain being filtered.
unsafe fn mark_consumed(buf: *mut ngx_buf_t) {
    // SAFETY: the caller passes a live buffer.
    unsafe {
        (*buf).pos = (*buf).last;
        if (*buf).in_file() != 0 {
            (*buf).file_pos = (*buf).file_last;
        }
    }
}

fn consume(input: *mut ngx_chain_t) {
    let mut link = input;
    // SAFETY: the chain and its buffers are live for this call.
    unsafe {
        while !link.is_null() {
            mark_consumed((*link).buf);
            link = (*link).next;
        }
    }
}

/// Runs the body filter scripts once, then sends header and new body.
fn send_filtered(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> ngx_int_t {
    // SAFETY: r is live for the whole filter call.
    let request = unsafe { &mut *r };
    let (Some(loc), Some(vm)) =
        (HttpMrubyModule::location_conf(request), HttpMrubyModule::main_conf(request).and_then(|m| m.vm.clone()))
    else {
        return ERROR;
    };
    let scripts = loc.scripts(HandlerSlot::BodyFilter);
    let mut failed = false;
    for script in [&scripts.inline, &scripts.file].into_iter().flatten() {
        if !matches!(run_one(r, &vm, script, loc.cache(), HandlerSlot::BodyFilter, ctx, false), ScriptRun::Done) {
            failed = true;
            break;
        }
    }
    ctx.discard_output();
    if failed {
        ctx.filter_output.set(ptr::null_mut());
        // let the error page through our filters, without running Ruby again
        ctx.filter.set(FilterState::Bypass);
        // SAFETY: r is live; the header was held back, so an error page can still go out.
        return unsafe {
            ngx_http_filter_finalize_request(
                r,
                ptr::addr_of_mut!(crate::ngx_http_mruby_module),
                NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            )
        };
    }
    // SAFETY: the buffers were allocated for this request in header_filter / Filter#body=.
    let (original, replaced): (&[u8], Option<&[u8]>) =
        unsafe { (&*ctx.filter_body.get(), ctx.filter_output.get().as_ref().map(|output| output.as_slice())) };
    let body = replaced.unwrap_or(original);
    if body != original {
        // the validators described the body the handler produced
        clear_validators(request);
    }
    request.headers_out.content_length_n = body.len() as off_t;
    if !request.headers_out.content_length.is_null() {
        // SAFETY: the element belongs to the live header list.
        unsafe { (*request.headers_out.content_length).hash = 0 };
        request.headers_out.content_length = ptr::null_mut();
    }
    if !request.headers_out.accept_ranges.is_null() {
        // SAFETY: as above.
        unsafe { (*request.headers_out.accept_ranges).hash = 0 };
        request.headers_out.accept_ranges = ptr::null_mut();
    }
    let rc = next_header(r);
    if rc == ERROR || rc > OK || request.header_only() != 0 {
        return rc;
    }
    // SAFETY: the buffer header comes from the request pool; it points into
    // the body Vec, which the same pool owns (and drops) after the response.
    unsafe {
        let buf = ngx_pcalloc(request.pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
        if buf.is_null() {
            return ERROR;
        }
        if !body.is_empty() {
            let data = body.as_ptr().cast_mut();
            (*buf).start = data;
            (*buf).pos = data;
            (*buf).last = data.add(body.len());
            (*buf).end = (*buf).last;
            (*buf).set_memory(1);
        }
        if request.main == r {
            (*buf).set_last_buf(1);
        } else {
            (*buf).set_last_in_chain(1);
            (*buf).set_sync(body.is_empty() as u32);
        }
        if body.is_empty() && request.main == r {
            (*buf).set_sync(0);
        }
        let mut out = ngx_chain_t { buf, next: ptr::null_mut() };
        next_body(r, &mut out)
    }
}

/// `ngx_http_clear_etag` and `ngx_http_clear_last_modified`.
fn clear_validators(request: &mut ngx_http_request_t) {
    request.headers_out.last_modified_time = -1;
    for header in [&mut request.headers_out.last_modified, &mut request.headers_out.etag] {
        if !header.is_null() {
            // SAFETY: the element belongs to the live header list; hash 0 drops it.
            unsafe { (**header).hash = 0 };
            *header = ptr::null_mut();
        }
    }
}

fn unsafe_log(r: *mut ngx_http_request_t) -> *mut ngx_log_t {
    // SAFETY: r is live; its connection log is valid for the request.
    unsafe { (*(*r).connection).log }
}
