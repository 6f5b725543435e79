//! The request's globals. Globals a request's scripts create belong to that
//! request: no other request's script ever runs while they are in the VM.
//! The VM holds the globals of at most one request, its *owner*; before a
//! script of another request runs, the owner's globals are taken out into
//! its record ([`HeldGlobals`], the data of a request-pool cleanup), and a
//! request's held globals are put back before its own next script. When a
//! request ends (however it ends) its globals go: removed from the VM if it
//! is the owner, released from its record otherwise.
//!
//! So the phases and filters of one request share them, no other request
//! ever sees them (not one that runs while this one waits on an upstream or
//! a timer), and init-time globals (the VM's baseline) stay shared. Taking
//! them out lazily, only when another request enters, means requests that
//! run one after the other never copy globals around; a request that
//! creates none pays a count comparison and two pointer tests per script.

use core::ffi::c_void;
use core::ptr;

use mruby_sys::mrb_value;
use ngx::ffi::*;

use super::request::RequestCtx;
use crate::vm::Vm;

/// A request's globals record: while they are out of the VM, a
/// GC-registered Hash of name Symbol => value.
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

/// Before a script of `r` runs: another request's globals leave the VM,
/// and `r`'s come back.
#[inline]
pub(crate) fn put_back(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    let owner = vm.globals_owner.get();
    if owner.is_null() && ctx.held_globals.get().is_null() && vm.held_globals.get() == 0 {
        return;
    }
    switch_to(vm, r, ctx);
}

#[cold]
fn switch_to(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    let mut record = ctx.held_globals.get();
    if record.is_null() && vm.held_globals.get() > 0 {
        // an internal redirect gave the request a fresh ctx: find its record
        record = find_record(r);
        ctx.held_globals.set(record);
    }
    let owner = vm.globals_owner.get() as *mut HeldGlobals;
    if !owner.is_null() && owner != record {
        // SAFETY: the owner's record lives until its request's pool cleanup,
        // which clears globals_owner first.
        let owner = unsafe { &mut *owner };
        if let Some(held) = vm.stash_request_globals() {
            owner.held = held;
            owner.holding = true;
        }
        vm.globals_owner.set(ptr::null_mut());
    }
    if record.is_null() {
        return;
    }
    // SAFETY: the record lives in the request pool (cleanup data) until the request ends.
    let record = unsafe { &mut *record };
    if record.holding {
        record.holding = false;
        vm.restore_request_globals(record.held);
        vm.globals_owner.set(ptr::from_mut(record).cast());
    }
}

/// After a script of `r` ran: if the VM has request globals, they are
/// `r`'s (it is the owner now). `Err` when its record cannot be allocated.
#[inline]
pub(crate) fn take_out(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Result<(), ()> {
    if !vm.has_request_globals() {
        return Ok(());
    }
    own(vm, r, ctx)
}

#[cold]
fn own(vm: &Vm, r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Result<(), ()> {
    let mut record = ctx.held_globals.get();
    if record.is_null() {
        let Ok(new) = new_record(vm, r) else {
            // nobody could own them: they must not reach another request
            vm.remove_request_globals();
            return Err(());
        };
        record = new;
        ctx.held_globals.set(record);
    }
    vm.globals_owner.set(record.cast());
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
        if vm.globals_owner.get() == data {
            vm.globals_owner.set(ptr::null_mut());
            vm.remove_request_globals();
        }
        if record.holding {
            record.holding = false;
            vm.mrb().gc_unregister(record.held);
        }
        vm.held_globals.set(vm.held_globals.get().saturating_sub(1));
    }
}
