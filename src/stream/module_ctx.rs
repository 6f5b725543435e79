//! The session's module ctx slot: where a session's [`StreamSession`]
//! (`host/stream.rs`) lives, in the session's pool.

use ngx::ffi::*;

use crate::host::StreamSession;
use crate::vm::Vm;

/// The state of session `s`, created on first use.
pub(crate) fn session_state<'a>(s: *mut ngx_stream_session_t, vm: &Vm) -> Option<&'a StreamSession> {
    let index = super::module().ctx_index;
    // SAFETY: s is a live session; ctx is its array of per-module pointers,
    // and the state is allocated zeroed in the session's connection pool.
    unsafe {
        let slot = (*s).ctx.add(index);
        if !(*slot).is_null() {
            return Some(&*((*slot) as *const StreamSession));
        }
        // zeroed here rather than by ngx_pcalloc: a fixed-size fill the
        // compiler inlines, instead of a memset call, on every connection
        let state = ngx_palloc((*(*s).connection).pool, core::mem::size_of::<StreamSession>()) as *mut StreamSession;
        if state.is_null() {
            return None;
        }
        core::ptr::write_bytes(state, 0, 1);
        (*state).init(s, vm);
        *slot = state.cast();
        Some(&*state)
    }
}

/// The state of `s` if its script already ran.
pub(crate) fn existing_state<'a>(s: *mut ngx_stream_session_t) -> Option<&'a StreamSession> {
    let index = super::module().ctx_index;
    // SAFETY: s is live; the slot is NULL or our StreamSession.
    unsafe { (*(*s).ctx.add(index) as *const StreamSession).as_ref() }
}
