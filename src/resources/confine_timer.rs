//! The auto-confine clock: with `resource_auto_confine`, each worker runs
//! the step once a second from an nginx timer, so a host is confined while
//! the load is high and released `hold` seconds after it fell even when no
//! request arrives. Every worker ticks; the zone's `last_step` lets only
//! the first of them in a second decide (the others only read the load).
//! The timer is cancelable (it never holds up a graceful exit), stops
//! re-arming once the worker is exiting, and is removed at `exit_process`.

use core::cell::Cell;
use core::ptr;

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;

use super::HttpResourcesModule;
use crate::ngx_util::log;

/// How often a worker runs the step.
const TICK_MS: ngx_msec_t = 1000;

thread_local! {
    /// This worker's timer event (in the cycle's pool), null when not armed.
    static TIMER: Cell<*mut ngx_event_t> = const { Cell::new(ptr::null_mut()) };
}

fn exiting() -> bool {
    // SAFETY: plain reads of nginx's process-state globals, on its own thread.
    unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 }
}

unsafe extern "C" fn on_tick(ev: *mut ngx_event_t) {
    if exiting() {
        return;
    }
    super::usage::tick();
    // SAFETY: ev is this worker's live timer event (TIMER), not in the tree now that it fired.
    unsafe { ngx_add_timer(ev, TICK_MS) };
}

/// `init_process`: arms the timer in a worker whose configuration has
/// `resource_auto_confine` (and so the usage zone).
pub(super) fn start(cycle: &ngx_cycle_t) -> Result<(), ()> {
    let wanted = HttpResourcesModule::main_conf(cycle).is_some_and(|m| m.auto_confine.is_some() && m.zone.is_some());
    if !wanted || !crate::ngx_util::is_serving_process() {
        return Ok(());
    }
    // SAFETY: the cycle's pool lives as long as this worker; zeroed memory is an idle event.
    let ev = unsafe { ngx_pcalloc(cycle.pool, core::mem::size_of::<ngx_event_t>()) } as *mut ngx_event_t;
    if ev.is_null() {
        log(cycle.log, NGX_LOG_EMERG, "resource_auto_confine: out of memory for the worker's timer");
        return Err(());
    }
    // SAFETY: ev is fresh, zeroed and ours.
    unsafe {
        (*ev).handler = Some(on_tick);
        (*ev).log = cycle.log;
        (*ev).set_cancelable(1);
        ngx_add_timer(ev, TICK_MS);
    }
    TIMER.set(ev);
    Ok(())
}

/// `exit_process`: removes the timer (its event lives in the cycle's pool).
pub(super) fn stop() {
    let ev = TIMER.replace(ptr::null_mut());
    if ev.is_null() {
        return;
    }
    // SAFETY: ev is the event `start` armed; the cycle's pool still holds it.
    unsafe {
        if (*ev).timer_set() != 0 {
            ngx_del_timer(ev);
        }
    }
}
