//! The request's slot in nginx's per-module context array: where the
//! phases find (or create) the request host's state, [`RequestCtx`].

use ngx::ffi::*;
use ngx::http::HttpModule;

use crate::host::RequestCtx;
use crate::HttpMrubyModule;

/// The module ctx of `r`, created (zeroed, in the request pool) on first use.
pub(crate) fn request_ctx<'a>(r: *mut ngx_http_request_t) -> Option<&'a RequestCtx> {
    let index = HttpMrubyModule::module().ctx_index;
    // SAFETY: r is a live request; ctx is an array of per-module pointers.
    unsafe {
        let slot = (*r).ctx.add(index);
        if !(*slot).is_null() {
            return Some(&*((*slot) as *const RequestCtx));
        }
        // zeroed here rather than by ngx_pcalloc: a fixed-size fill the
        // compiler inlines, instead of a memset call, on every request
        let ctx = ngx_palloc((*r).pool, core::mem::size_of::<RequestCtx>()) as *mut RequestCtx;
        if ctx.is_null() {
            return None;
        }
        core::ptr::write_bytes(ctx, 0, 1);
        (*ctx).request.set(r);
        *slot = ctx.cast();
        Some(&*ctx)
    }
}

/// The ctx of `r` if a handler created it.
pub(crate) fn existing_ctx<'a>(r: *mut ngx_http_request_t) -> Option<&'a RequestCtx> {
    let index = HttpMrubyModule::module().ctx_index;
    // SAFETY: r is a live request; the slot is NULL or our RequestCtx.
    unsafe {
        let ctx = *(*r).ctx.add(index);
        (!ctx.is_null()).then(|| &*(ctx as *const RequestCtx))
    }
}
