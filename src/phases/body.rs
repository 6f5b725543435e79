//! `mruby_enable_read_request_body`: the whole body is read before Ruby
//! runs in that scope (memory or temp file, within client_max_body_size).
//! If it arrives later, the handler steps aside and the phases are resumed
//! when the body is complete.

use ngx::ffi::*;

use super::module_ctx::existing_ctx;
use crate::conf::HandlerSlot;
use crate::host::request::{BodyState, RequestCtx};

const DONE: ngx_int_t = NGX_DONE as ngx_int_t;

/// `Ok` when the body is there; `Err(rc)` is what the phase handler returns.
pub(crate) fn ensure_body(r: *mut ngx_http_request_t, slot: HandlerSlot, ctx: &RequestCtx) -> Result<(), ngx_int_t> {
    match ctx.body.get() {
        BodyState::Done => return Ok(()),
        BodyState::Waiting | BodyState::WaitingInContent => return Err(DONE),
        BodyState::NotStarted => {}
    }
    // SAFETY: r is a live request; nginx owns the body reading from here on.
    let rc = unsafe {
        (*r).set_request_body_in_single_buf(1);
        (*r).set_request_body_in_persistent_file(1);
        (*r).set_request_body_in_clean_file(1);
        ngx_http_read_client_request_body(r, Some(body_read))
    };
    if rc == NGX_ERROR as ngx_int_t || rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return Err(rc);
    }
    if rc == NGX_AGAIN as ngx_int_t {
        ctx.body.set(if slot == HandlerSlot::Content { BodyState::WaitingInContent } else { BodyState::Waiting });
        return Err(DONE);
    }
    Ok(())
}

/// Post handler of `ngx_http_read_client_request_body`, which took a
/// reference on the request: give it back unless the content phase's
/// finalize(NGX_DONE) already did, and resume the phases if we left them.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    let Some(ctx) = existing_ctx(r) else {
        release_reference(r);
        return;
    };
    let was = ctx.body.get();
    ctx.body.set(BodyState::Done);
    match was {
        BodyState::Waiting => {
            release_reference(r);
            resume_phases(r);
        }
        BodyState::WaitingInContent => resume_phases(r),
        _ => release_reference(r),
    }
}

/// Re-enters the phase engine at our handler. Reading the body replaced
/// the write event handler with an empty one; put the phase runner back
/// first, as nginx's own post-body handlers do, so that a later phase that
/// waits for a write event (a subrequest finishing, `auth_request`) is
/// woken again instead of hanging.
fn resume_phases(r: *mut ngx_http_request_t) {
    // SAFETY: r is live; ngx_http_core_run_phases is nginx's phase runner.
    unsafe {
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

fn release_reference(r: *mut ngx_http_request_t) {
    // SAFETY: r and r->main are live; read_client_request_body incremented count.
    unsafe {
        let main = (*r).main;
        (*main).set_count((*main).count() - 1);
    }
}
