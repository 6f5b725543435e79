//! Per-host usage and auto-confinement: what the tenant path feeds in
//! (`record_usage`) and what the Ruby API, `resource_stats` and the class
//! choice read (`host_usage`, `is_confined`). Each of them, and each
//! worker's one-second timer (`confine_timer.rs`, so that confinement and
//! release need no request), runs the auto-confine step first, at most once
//! a second over all workers.

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use resource_policy::checker::Figures;
use resource_policy::confine::{ConfineSpec, Decision};
use resource_policy::hosts::{HostRecord, Recorded};

use super::conf::MainConf;
use super::zone::{zone_of, Locked, UsageZone};
use super::HttpResourcesModule;
use crate::ngx_util::log;

/// A copy of one host's record, read under the lock.
pub type HostSnapshot = HostRecord;

fn running_main_conf<'a>() -> Option<&'a MainConf> {
    // SAFETY: ngx_cycle is the running cycle of this process.
    let cycle = unsafe { ngx_cycle.as_ref()? };
    HttpResourcesModule::main_conf(cycle)
}

fn running_zone<'a>() -> Option<(&'a MainConf, &'a UsageZone)> {
    let main = running_main_conf()?;
    Some((main, zone_of(main.zone?)?))
}

fn cycle_log() -> *mut ngx_log_t {
    // SAFETY: ngx_cycle is the running cycle; its log lives as long.
    unsafe { ngx_cycle.as_ref().map_or(core::ptr::null_mut(), |c| c.log) }
}

fn now() -> u64 {
    ngx_time().max(0) as u64
}

/// The file the signal is read from: `load_source=`/`pressure_source=`,
/// the PSI file `nginx -t` chose, or `/proc/loadavg`.
pub fn signal_source(spec: &ConfineSpec) -> &str {
    spec.source.as_deref().unwrap_or("/proc/loadavg")
}

/// The signal's reading in hundredths: the 1-minute load average, or the
/// CPU pressure (PSI `some avg10`); `Err` names what went wrong.
pub fn read_load(spec: &ConfineSpec) -> Result<u64, String> {
    let path = signal_source(spec);
    let name = spec.signal.name();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the {name} from \"{path}\": {e}"))?;
    spec.signal.parse_reading(&text).ok_or_else(|| format!("\"{path}\" is not in {} format", spec.signal.file_format()))
}

/// Runs the auto-confine step if this second has not had one; returns the
/// decisions to log (logged after the lock is released).
fn step(main: &MainConf, locked: &mut Locked<'_>, load: Option<Result<u64, String>>) -> Vec<Decision> {
    let (Some(spec), Some(load)) = (&main.auto_confine, load) else {
        return Vec::new();
    };
    let now = now();
    if locked.header.last_step == now {
        return Vec::new();
    }
    locked.header.last_step = now;
    match load {
        Ok(load) => {
            load_error_over(spec);
            locked.table.step(spec, &mut locked.header.state, now, load)
        }
        Err(message) => {
            log_load_error(&message, now);
            Vec::new()
        }
    }
}

/// How often a worker repeats that the load cannot be read: the timers
/// step every second, traffic or not, and one line a second would flood
/// the error log while the operator fixes `load_source=` (`pressure_source=`).
const LOAD_ERROR_EVERY_SECS: u64 = 60;

thread_local! {
    /// The load error this worker last logged, and when (empty: none).
    static LOAD_ERROR: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// One `[error]` when the load cannot be read, again after a minute while it lasts.
fn log_load_error(message: &str, now: u64) {
    LOAD_ERROR.with_borrow_mut(|(at, last)| {
        if last == message && now < *at + LOAD_ERROR_EVERY_SECS {
            return;
        }
        log(cycle_log(), NGX_LOG_ERR, &format!("resource_auto_confine: {message}, no decision this second"));
        *at = now;
        *last = message.to_string();
    });
}

/// The load can be read again: one `[notice]` if this worker logged it could not.
fn load_error_over(spec: &ConfineSpec) {
    LOAD_ERROR.with_borrow_mut(|(_, last)| {
        if !last.is_empty() {
            let message = format!("resource_auto_confine: the {} can be read again", spec.signal.name());
            log(cycle_log(), NGX_LOG_NOTICE, &message);
            last.clear();
        }
    });
}

fn log_decisions(main: &MainConf, decisions: &[Decision]) {
    let Some(spec) = &main.auto_confine else { return };
    for d in decisions {
        let level = if matches!(d, Decision::Confine { .. }) { NGX_LOG_WARN } else { NGX_LOG_NOTICE };
        log(cycle_log(), level, &format!("resource_auto_confine: {}", d.describe(spec)));
    }
}

thread_local! {
    /// This worker's last load reading and the second it was taken: the
    /// file is read at most once a second per worker, not per request.
    static LAST_LOAD: std::cell::RefCell<(u64, Option<Result<u64, String>>)> = const { std::cell::RefCell::new((0, None)) };
}

/// The load for this second's step (cached per worker for the second).
fn current_load(spec: &ConfineSpec) -> Result<u64, String> {
    let now = now();
    LAST_LOAD.with(|cell| {
        let mut last = cell.borrow_mut();
        match &last.1 {
            Some(reading) if last.0 == now => reading.clone(),
            _ => {
                let reading = read_load(spec);
                *last = (now, Some(reading.clone()));
                reading
            }
        }
    })
}

/// Locks the zone after reading the load (a file read, kept out of the
/// lock), runs the step, calls `f`, unlocks, logs the decisions.
fn with_zone<T>(f: impl FnOnce(&mut Locked<'_>) -> T) -> Option<T> {
    let (main, zone) = running_zone()?;
    let load = main.auto_confine.as_ref().map(current_load);
    let mut locked = zone.lock()?;
    let decisions = step(main, &mut locked, load);
    let result = f(&mut locked);
    drop(locked);
    log_decisions(main, &decisions);
    Some(result)
}

/// The timer's tick: the step of this second, if no worker ran it yet.
pub fn tick() {
    with_zone(|_| ());
}

/// Adds one request's figures to its host: CPU time (user, system) and
/// peak memory of the runner that served it, as the kernel counted them.
/// The tenant path calls this once per request; nothing a runner says
/// about itself may reach it.
pub fn record_usage(host: &str, cpu_user_ms: u64, cpu_sys_ms: u64, mem_peak_kb: u64) {
    let figures = Figures { cpu_user_ms, cpu_sys_ms, mem_peak_kb };
    let bucket_secs = bucket_secs();
    let outcome = with_zone(|locked| locked.table.record(host, now(), bucket_secs, &figures));
    match outcome {
        Some(Recorded::Replaced(old)) => log(
            cycle_log(),
            NGX_LOG_INFO,
            &format!("resources: usage zone full, host \"{host}\" replaces the least recently seen \"{old}\""),
        ),
        Some(Recorded::Full) => log(
            cycle_log(),
            NGX_LOG_WARN,
            &format!("resources: usage zone full of confined hosts, \"{host}\" is not counted"),
        ),
        _ => {}
    }
}

/// A host's usage (`None` without a zone; a zeroed record for an unseen host).
pub fn host_usage(host: &str) -> Option<HostSnapshot> {
    with_zone(|locked| locked.table.find(host).copied().unwrap_or_default())
}

/// Whether auto-confinement holds `host` in its class now.
pub fn is_confined(host: &str) -> bool {
    with_zone(|locked| locked.table.find(host).is_some_and(|r| r.confined != 0)).unwrap_or(false)
}

/// Every host's record and the zone's capacity, for `resource_stats`.
pub fn all_hosts() -> Option<(Vec<HostSnapshot>, usize)> {
    let (_, zone) = running_zone()?;
    let capacity = zone.capacity();
    with_zone(|locked| (locked.table.records().copied().collect(), capacity))
}

/// A record's CPU ms over the auto-confine window ending now.
pub fn window_total(record: &HostRecord) -> u64 {
    record.window.total(now(), bucket_secs())
}

/// The window's bucket: `window=` / 10, or 6 s (a 60 s window) without auto-confinement.
fn bucket_secs() -> u64 {
    running_main_conf().and_then(|m| m.auto_confine.as_ref()).map_or(6, ConfineSpec::bucket_secs)
}
