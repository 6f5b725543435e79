//! `mruby_output_header_filter` and `mruby_output_body_filter`.
//!
//! The body filter collects the whole response (any number of buffers,
//! chunked or not, files read into memory), runs the script once with
//! `Nginx::Filter#body`, and sends the result with a correct Content-Length.
//! The header is held back until then, so the length matches the new body
//! (ngx_mruby sent the old header first and could not handle chunked
//! responses, #172, #206).

use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::module_ctx::{existing_ctx, request_ctx};
use super::run_one;
use crate::conf::HandlerSlot;
use crate::host::filter::new_buffer;
use crate::host::request::{FilterState, RequestCtx};
use crate::host::wait::ScriptRun;
use crate::ngx_util::{log, read_file_range};
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
            if !matches!(run_one(r, vm, script, loc.cache(), HandlerSlot::HeaderFilter, ctx, false), ScriptRun::Done) {
                break;
            }
        }
        // output written from a filter has nowhere to go
        ctx.discard_output();
    }
    let head = request.method == NGX_HTTP_HEAD as ngx_uint_t;
    if has_body && request.header_only() == 0 && !head && ctx.filter.get() == FilterState::Off {
        let Some(collected) = new_buffer(request.pool) else {
            return ERROR;
        };
        ctx.filter_body.set(collected);
        ctx.filter.set(FilterState::Collecting);
        request.set_filter_need_in_memory(1);
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
    let is_main = unsafe { (*r).main == r };
    let finished = match collect(input, collected, is_main) {
        Ok(finished) => finished,
        Err(()) => {
            log(unsafe_log(r), NGX_LOG_ERR, "mruby_output_body_filter: cannot read the response body file");
            return ERROR;
        }
    };
    if !finished {
        return OK;
    }
    ctx.filter.set(FilterState::Done);
    send_filtered(r, ctx)
}

/// Copies every buffer of `input` and marks it consumed; true at the end of the response.
fn collect(input: *mut ngx_chain_t, collected: &mut Vec<u8>, is_main: bool) -> Result<bool, ()> {
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
                    collected.extend_from_slice(core::slice::from_raw_parts((*buf).pos, len));
                }
            } else if (*buf).in_file() != 0 && !(*buf).file.is_null() {
                // we sit above the copy filter: read file buffers ourselves
                match read_file_range((*(*buf).file).fd, (*buf).file_pos, (*buf).file_last) {
                    Ok(bytes) => collected.extend_from_slice(&bytes),
                    Err(_) => return Err(()),
                }
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
    let body: &[u8] = unsafe {
        if ctx.filter_output.get().is_null() {
            &*ctx.filter_body.get()
        } else {
            &*ctx.filter_output.get()
        }
    };
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

fn unsafe_log(r: *mut ngx_http_request_t) -> *mut ngx_log_t {
    // SAFETY: r is live; its connection log is valid for the request.
    unsafe { (*(*r).connection).log }
}
