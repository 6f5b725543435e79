//! The body filter's part of the request host: the collected response body
//! (`Nginx::Filter#body`) and the replacement a script sets (`body=`). The
//! filter chain itself (collecting, sending) is in `phases/filter.rs`.

use ngx::core::Pool;
use ngx::ffi::*;

use super::request::{FilterState, RequestCtx};

const ONLY_IN_BODY_FILTER: &str = "Nginx::Filter is only available in mruby_output_body_filter";

/// A pool-owned, initially empty byte buffer (dropped with the pool).
pub(crate) fn new_buffer(pool: *mut ngx_pool_t) -> Option<*mut Vec<u8>> {
    // SAFETY: pool is the live request pool; allocate() registers the drop.
    let pool = unsafe { Pool::from_ngx_pool(pool) };
    let buffer = pool.allocate(Vec::<u8>::new());
    (!buffer.is_null()).then_some(buffer)
}

/// `Nginx::Filter#body`: the collected response body.
pub(crate) fn body(ctx: &RequestCtx) -> Result<&[u8], String> {
    if ctx.filter_body.get().is_null() || ctx.filter.get() != FilterState::Done {
        return Err(ONLY_IN_BODY_FILTER.into());
    }
    // SAFETY: allocated in the header filter for this request, in its pool.
    Ok(unsafe { &*ctx.filter_body.get() })
}

/// `Nginx::Filter#body=`: the body to send instead.
pub(crate) fn set_output(pool: *mut ngx_pool_t, ctx: &RequestCtx, bytes: Vec<u8>) -> Result<(), String> {
    if ctx.filter.get() != FilterState::Done {
        return Err(ONLY_IN_BODY_FILTER.into());
    }
    if ctx.filter_output.get().is_null() {
        ctx.filter_output.set(new_buffer(pool).ok_or("out of memory")?);
    }
    // SAFETY: allocated just above or earlier for this request.
    let output = unsafe { &mut *ctx.filter_output.get() };
    *output = bytes;
    Ok(())
}
