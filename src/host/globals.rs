//! The request's globals. A request's scripts may create globals; they
//! belong to that request: removed when it ends, and held aside (out of the
//! VM) while it waits, so requests interleaving on one worker never see or
//! remove each other's. Init-time globals stay shared (`vm::Vm` keeps
//! their baseline).

use core::ffi::c_void;

use ngx::ffi::*;

use super::request::RequestCtx;
use crate::vm::Vm;

/// After a script ran: if it created globals, make sure they are removed
/// when the request ends, however it ends. A request that creates none
/// (the common case) pays one comparison, no pool cleanup.
pub(crate) fn watch(r: *mut ngx_http_request_t, vm: &Vm, ctx: &RequestCtx) -> Result<(), ()> {
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

/// Pool cleanup: runs however the request ends (normal, abort, timeout...).
extern "C" fn remove_request_globals(data: *mut c_void) {
    // SAFETY: data is the cycle's Vm, which outlives every request of the cycle.
    let vm = unsafe { &*(data as *const Vm) };
    vm.remove_request_globals();
}

/// The request steps out of the VM to wait: take its globals with it.
pub(crate) fn hold_aside(vm: &Vm, ctx: &RequestCtx) {
    if let Some(stash) = vm.stash_request_globals() {
        ctx.stashed_globals.set(stash);
        ctx.has_stash.set(true);
    }
}

/// The request's script resumes: its globals go back into the VM.
pub(crate) fn put_back(vm: &Vm, ctx: &RequestCtx) {
    if ctx.has_stash.replace(false) {
        vm.restore_request_globals(ctx.stashed_globals.get());
    }
}

/// The request ended while its globals were held aside: let them go.
pub(crate) fn drop_held(vm: &Vm, ctx: &RequestCtx) {
    if ctx.has_stash.replace(false) {
        vm.mrb().gc_unregister(ctx.stashed_globals.get());
    }
}
