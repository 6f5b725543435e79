//! The request's globals. Globals a request's scripts create belong to that
//! request: they are in the VM only while one of its scripts runs. When
//! the VM call for a request ends they are taken out into the request's
//! record ([`HeldGlobals`], in a request-pool cleanup), and put back when
//! its next script starts; the cleanup lets them go when the request ends.
//! So the phases (and filters) of one request share them, no other request
//! ever sees them, and init-time globals (the VM's baseline) stay shared.
//!
//! A request that creates no globals pays one comparison per VM call (the
//! globals count against the baseline's) and one flag test.

use core::ffi::c_void;
use core::ptr;

use mruby_sys::mrb_value;
use ngx::ffi::*;

use super::request::RequestCtx;
use crate::vm::Vm;

/// A request's globals while it is outside the VM: a GC-registered Hash
/// of name Symbol => value, or nil when they are in the VM.
pub struct HeldGlobals {
    request: *mut ngx_http_request_t,
    vm: *const Vm,
    held: mrb_value,
    holding: bool,
}

type CleanupFn = unsafe extern "C" fn(*mut c_void);

/// The one pointer to the record's cleanup, stored and compared (so both
/// sides use the same address).
static RELEASE: CleanupFn = release_record;

/// Before a script of `r` runs: its globals go back into the VM.
#[inline]
pub(crate) fn put_back(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    if ctx.held_globals.get().is_null() && vm.held_globals.get() == 0 {
        return;
    }
    put_back_held(vm, r, ctx);
}

#[cold]
fn put_back_held(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    let mut record = ctx.held_globals.get();
    if record.is_null() {
        // an internal redirect gave the request a fresh ctx: find its record
        record = find_record(r);
        ctx.held_globals.set(record);
        if record.is_null() {
            return;
        }
    }
    // SAFETY: the record lives in the request pool (cleanup data) until the request ends.
    let record = unsafe { &mut *record };
    if !record.holding {
        return;
    }
    record.holding = false;
    vm.restore_request_globals(record.held);
}

/// After a script of `r` ran: the globals it created leave the VM with the
/// request. `Err` when the record cannot be allocated.
#[inline]
pub(crate) fn take_out(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Result<(), ()> {
    if !vm.has_request_globals() {
        return Ok(());
    }
    take_out_made(vm, r, ctx)
}

#[cold]
fn take_out_made(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Result<(), ()> {
    let mut record = ctx.held_globals.get();
    if record.is_null() {
        record = new_record(vm, r)?;
        ctx.held_globals.set(record);
    }
    // SAFETY: as in put_back.
    let record = unsafe { &mut *record };
    if let Some(held) = vm.stash_request_globals() {
        record.held = held;
        record.holding = true;
    }
    Ok(())
}

fn new_record(vm: &Vm, r: *mut ngx_http_request_t) -> Result<*mut HeldGlobals, ()> {
    // SAFETY: r is live; the record is the cleanup's data, in the same pool.
    unsafe {
        let cleanup = ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<HeldGlobals>());
        if cleanup.is_null() {
            return Err(());
        }
        let record = (*cleanup).data as *mut HeldGlobals;
        record.write(HeldGlobals { request: r, vm, held: vm.mrb().nil(), holding: false });
        (*cleanup).handler = Some(RELEASE);
        vm.held_globals.set(vm.held_globals.get() + 1);
        Ok(record)
    }
}

/// The record of `r` among its pool's cleanups, or NULL.
fn find_record(r: *mut ngx_http_request_t) -> *mut HeldGlobals {
    // SAFETY: r is live; the cleanup list belongs to its pool.
    unsafe {
        let mut cleanup = (*(*r).pool).cleanup;
        while !cleanup.is_null() {
            if (*cleanup).handler.is_some_and(|h| h as usize == RELEASE as usize) {
                let record = (*cleanup).data as *mut HeldGlobals;
                if (*record).request == r {
                    return record;
                }
            }
            cleanup = (*cleanup).next;
        }
    }
    ptr::null_mut()
}

/// Pool cleanup: the request ended (however it ended); its globals go.
unsafe extern "C" fn release_record(data: *mut c_void) {
    // SAFETY: data is a HeldGlobals written by new_record; the VM outlives
    // every request of its cycle.
    unsafe {
        let record = &mut *(data as *mut HeldGlobals);
        let vm = &*record.vm;
        if record.holding {
            record.holding = false;
            vm.mrb().gc_unregister(record.held);
        }
        vm.held_globals.set(vm.held_globals.get().saturating_sub(1));
    }
}
