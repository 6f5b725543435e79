//! `ngx_http_vlimit_module`: per-tenant concurrency limits in a shared zone
//! (`vlimit_*`) and load-average limits (`lalimit*`).
//!
//! This file holds the module table, the lifecycle hooks and the small
//! public API for the Ruby side; directives are in `conf.rs`, the request
//! path in `counting.rs`, what a key counts in `key.rs`; the counters live
//! in the shared table of `shm/` (`zone` here).
//!
//! May import: `shm/` and `ngx_util` only.

pub mod conf;
pub mod counting;
pub mod key;
pub mod lalimit;
pub mod stats;
pub mod variables;
pub use crate::shm::table as zone;

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};

use conf::{zone_ctx, MainConf};
use counting::worker_slot;
use key::KeyKind;
use zone::{Key, ZoneCtx};

/// The module's type for the `ngx` crate's configuration helpers.
pub struct HttpVlimitModule;

impl HttpModule for HttpVlimitModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static; nginx only writes its indices at load.
        unsafe { &*addr_of!(ngx_http_vlimit_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match variables::add_variables(cf) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match postconfiguration(cf) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }
}

// SAFETY: the associated types are the structs this module allocates.
unsafe impl HttpModuleMainConf for HttpVlimitModule {
    type MainConf = MainConf;
}

// SAFETY: as above; the server level keeps no state of its own.
unsafe impl HttpModuleServerConf for HttpVlimitModule {
    type ServerConf = ();
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for HttpVlimitModule {
    type LocationConf = conf::LocConf;
}

/// Checks the zones and registers the PREACCESS handler when any scope
/// uses a limit.
fn postconfiguration(cf: &mut ngx_conf_t) -> Result<(), ()> {
    conf::check_zones(cf)?;
    counting::CONF_GENERATION.fetch_add(1, Ordering::Relaxed);
    let used = HttpVlimitModule::main_conf(cf).is_some_and(|m| m.used);
    if !used {
        return Ok(());
    }
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    let phase = ngx_http_phases_NGX_HTTP_PREACCESS_PHASE as usize;
    // SAFETY: the phase handler arrays are initialised before postconfiguration.
    unsafe {
        let h = ngx_array_push(&mut cmcf.phases[phase].handlers) as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Err(());
        }
        *h = Some(counting::preaccess_handler);
    }
    Ok(())
}

static NGX_HTTP_VLIMIT_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(HttpVlimitModule::preconfiguration),
    postconfiguration: Some(HttpVlimitModule::postconfiguration),
    create_main_conf: Some(HttpVlimitModule::create_main_conf),
    init_main_conf: Some(HttpVlimitModule::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(HttpVlimitModule::create_loc_conf),
    merge_loc_conf: Some(HttpVlimitModule::merge_loc_conf),
};

/// The nginx module table of vlimit and lalimit.
#[no_mangle]
#[used]
pub static mut ngx_http_vlimit_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_VLIMIT_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    ..ngx_module_t::default()
};

/// The zones of the running configuration.
fn cycle_zones<'a>(cycle: &ngx_cycle_t) -> impl Iterator<Item = &'a ZoneCtx> {
    let zones: &'a [*mut ngx_shm_zone_t] = HttpVlimitModule::main_conf(cycle).map_or(&[][..], |m| m.zones.as_slice());
    zones.iter().filter_map(|&z| zone_ctx(z))
}

/// Whether the worker registered as `pid` is gone: no process has the pid
/// (ESRCH), or the pid now belongs to another user's process (EPERM: the
/// pid was recycled; every worker runs as the one `user` of nginx.conf).
/// After a reload that changed `user`, an old worker still draining looks
/// dead too: its holds are given back early, and its releases then find
/// nothing to take (the counts are low for a moment, never stuck).
fn process_is_dead(pid: i32) -> bool {
    use nix::errno::Errno;
    matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(Errno::ESRCH | Errno::EPERM))
}

/// `init_process`: gives back the counts of dead workers (the one this
/// worker replaces in its slot, and any other whose pid is gone), then
/// registers this worker in the ledger.
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // the cache manager and loader count no request: they stay out of the ledger
    if !crate::ngx_util::is_serving_process() {
        return Status::NGX_OK.into();
    }
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &*cycle };
    // SAFETY: ngx_pid is set at process start.
    let my_pid = unsafe { ngx_pid };
    let my_slot = worker_slot() as usize;
    counting::init_worker_state();
    for zone in cycle_zones(cycle) {
        let mut reclaimed = Vec::new();
        if let Some(mut locked) = zone.lock() {
            let table = &mut locked.table;
            for slot in 0..zone::MAX_SLOTS {
                let pid = table.slot_pid(slot);
                if pid == 0 || pid == my_pid {
                    continue;
                }
                // a slot is reused only after the master reaped its previous process
                if slot == my_slot || process_is_dead(pid) {
                    let n = table.reclaim_slot(slot as u32);
                    table.set_slot_pid(slot, 0);
                    reclaimed.push((pid, n));
                }
            }
            // counts left under our slot by a process that registered nowhere
            let stray = table.reclaim_slot(my_slot as u32);
            if stray > 0 {
                reclaimed.push((0, stray));
            }
            table.set_slot_pid(my_slot, my_pid);
        }
        for (pid, n) in reclaimed.into_iter().filter(|(_, n)| *n > 0) {
            crate::ngx_util::log(
                cycle.log,
                NGX_LOG_WARN,
                &format!("vlimit: zone \"{}\": gave back {n} counts held by dead worker {pid}", zone.name),
            );
        }
    }
    Status::NGX_OK.into()
}

/// `exit_process`: requests still open when a worker exits never run their
/// pool cleanup; give their counts back and leave the ledger.
extern "C" fn exit_worker(cycle: *mut ngx_cycle_t) {
    if !crate::ngx_util::is_serving_process() {
        return;
    }
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &*cycle };
    let my_slot = worker_slot() as usize;
    // SAFETY: ngx_pid is set at process start.
    let my_pid = unsafe { ngx_pid };
    for zone in cycle_zones(cycle) {
        if let Some(mut locked) = zone.lock() {
            let table = &mut locked.table;
            if table.slot_pid(my_slot) == my_pid {
                table.reclaim_slot(my_slot as u32);
                table.set_slot_pid(my_slot, 0);
            }
        }
    }
}

/// Log lines per second per worker before suppression.
const LOG_LINES_PER_SECOND: u64 = 10;
static LOG_SECOND: AtomicI64 = AtomicI64::new(0);
static LOG_LINES: AtomicU64 = AtomicU64::new(0);
static LOG_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Logs at most `LOG_LINES_PER_SECOND` lines a second (per worker), so a
/// flood of rejections cannot flood the error log.
pub fn rate_limited_log(log: *mut ngx_log_t, level: u32, message: &str) {
    let now = ngx_time();
    if LOG_SECOND.swap(now, Ordering::Relaxed) != now {
        LOG_LINES.store(0, Ordering::Relaxed);
    }
    if LOG_LINES.fetch_add(1, Ordering::Relaxed) >= LOG_LINES_PER_SECOND {
        LOG_SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = LOG_SUPPRESSED.swap(0, Ordering::Relaxed);
    if suppressed > 0 {
        crate::ngx_util::log(log, level, &format!("{message} ({suppressed} similar lines suppressed)"));
    } else {
        crate::ngx_util::log(log, level, message);
    }
}

fn running_main_conf<'a>() -> Option<&'a MainConf> {
    // SAFETY: ngx_cycle is the running cycle of this worker.
    let cycle = unsafe { ngx_cycle.as_ref()? };
    HttpVlimitModule::main_conf(cycle)
}

/// Current count of a key in a zone (for `Nginx::Vlimit.count`).
///
/// `kind` is `ip` (an address in text form), `file` (a path, resolved to
/// its device and inode), `host` (matched lowercased, without port or
/// trailing dot) or `key` (the exact value of a `key=` limit). Returns
/// `None` when the zone or kind is unknown; `Some(0)` for an idle key.
pub fn key_count(zone_name: &str, kind: &str, key: &str) -> Option<u64> {
    let zone = running_main_conf()?.zone(zone_name)?;
    let (kind, bytes): (KeyKind, Vec<u8>) = match kind {
        "ip" => match key.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => (KeyKind::Ip, a.octets().to_vec()),
            std::net::IpAddr::V6(a) => (KeyKind::Ip, a.octets().to_vec()),
        },
        "file" => match nix::sys::stat::stat(key) {
            Ok(st) => {
                let mut id = st.st_dev.to_ne_bytes().to_vec();
                id.extend_from_slice(&st.st_ino.to_ne_bytes());
                (KeyKind::File, id)
            }
            Err(_) => (KeyKind::Path, key.as_bytes().to_vec()),
        },
        "host" => {
            let host = key.split(':').next().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
            (KeyKind::Host, host.into_bytes())
        }
        "key" => (KeyKind::Key, key.as_bytes().to_vec()),
        _ => return None,
    };
    let key = Key::new(kind.tag(), &bytes, zone.hasher());
    let mut locked = zone.lock()?;
    let table = &mut locked.table;
    Some(table.find(&key).map_or(0, |idx| table.entry(idx).count as u64))
}

/// The stats JSON of one zone (as `vlimit_stats zone=<name>` shows it).
pub fn stats_json(zone_name: &str) -> Option<String> {
    let main = running_main_conf()?;
    let value = stats::stats_value(main, Some(zone_name))?;
    Some(value.get(zone_name)?.to_string())
}
