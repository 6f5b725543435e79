//! The PREACCESS handler: checks and counts every `vlimit` of a main request
//! under the zone lock, and the pool cleanup that gives the counts back
//! however the request ends.

use core::ffi::c_void;
use core::ptr;
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use ngx::ffi::*;
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule,
};

use super::conf::{zone_ctx, Limit, LimitKind, LocConf};
use super::zone::{key_hash, KeyKind, Locked, ZoneCtx};
use super::{lalimit, rate_limited_log, HttpVlimitModule};
use crate::ngx_util::str_bytes;

const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;
const ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// What happened to a request, for `$vlimit_status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum VlimitStatus {
    Passed,
    Rejected,
    ZoneFull,
    RejectedDryRun,
}

impl VlimitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VlimitStatus::Passed => "PASSED",
            VlimitStatus::Rejected => "REJECTED",
            VlimitStatus::ZoneFull => "ZONE_FULL",
            VlimitStatus::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

/// One count a request holds.
#[derive(Clone, Copy)]
struct Held {
    shm_zone: *mut ngx_shm_zone_t,
    entry: u32,
}

/// A main request's counts: the data of its pool cleanup. Its presence
/// also marks the request as evaluated, so an internal redirect (which
/// wipes the module contexts, not the pool) is never counted twice.
pub struct RequestHold {
    pub status: VlimitStatus,
    /// The highest count among the request's keys (after its own count).
    pub count: u32,
    slot: u32,
    held_len: usize,
    held: *mut Held,
}

/// The worker slot used in the zone ledger.
pub fn worker_slot() -> u32 {
    // SAFETY: ngx_process_slot is written by the master before fork only.
    let slot = unsafe { ngx_process_slot };
    (slot.max(0) as usize).min(super::zone::MAX_SLOTS - 1) as u32
}

type CleanupFn = unsafe extern "C" fn(*mut c_void);

/// The one pointer to our cleanup, stored and compared (so both sides use
/// the same address).
static CLEANUP: CleanupFn = cleanup;

/// The request's hold, if the handler already ran for this main request.
pub fn find_hold(r: &ngx_http_request_t) -> Option<&RequestHold> {
    // SAFETY: r->main is the live main request; its pool's cleanup list is a
    // chain nginx owns, and ours carry a RequestHold as data.
    unsafe {
        let pool = (*r.main).pool;
        let mut c = (*pool).cleanup;
        while !c.is_null() {
            if (*c).handler.is_some_and(|h| h as usize == CLEANUP as usize) {
                return ((*c).data as *const RequestHold).as_ref();
            }
            c = (*c).next;
        }
    }
    None
}

/// Adds the cleanup (before anything is counted, so a count is never
/// taken without its release being registered).
fn new_hold<'a>(r: &ngx_http_request_t, capacity: usize) -> Option<&'a mut RequestHold> {
    // SAFETY: allocations from the live request pool, initialised before use.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, core::mem::size_of::<RequestHold>());
        if cln.is_null() {
            return None;
        }
        let held = ngx_palloc(r.pool, capacity * core::mem::size_of::<Held>()) as *mut Held;
        if held.is_null() {
            return None;
        }
        let hold = (*cln).data as *mut RequestHold;
        ptr::write(
            hold,
            RequestHold {
                status: VlimitStatus::Passed,
                count: 0,
                slot: worker_slot(),
                held_len: 0,
                held,
            },
        );
        (*cln).handler = Some(CLEANUP);
        Some(&mut *hold)
    }
}

/// Pool cleanup: gives back every count of the request.
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: data is the RequestHold written by new_hold.
    let hold = unsafe { &mut *(data as *mut RequestHold) };
    release_all(hold);
}

fn release_all(hold: &mut RequestHold) {
    let held = held_slice(hold);
    let mut i = 0;
    while i < held.len() {
        let shm_zone = held[i].shm_zone;
        let Some(mut locked) = zone_ctx(shm_zone).and_then(ZoneCtx::lock) else {
            i += 1;
            continue;
        };
        // release every count of this zone under one lock
        while i < held.len() && held[i].shm_zone == shm_zone {
            locked.table.release(held[i].entry, hold.slot);
            i += 1;
        }
    }
    hold.held_len = 0;
}

fn held_slice<'a>(hold: &RequestHold) -> &'a [Held] {
    if hold.held_len == 0 {
        return &[];
    }
    // SAFETY: held points at held_len initialised entries in the request pool.
    unsafe { core::slice::from_raw_parts(hold.held, hold.held_len) }
}

/// A request's key for one limit, computed before taking the lock.
struct RequestKey<'r> {
    limit: &'r Limit,
    zone: &'r ZoneCtx,
    kind: KeyKind,
    inline: [u8; 16],
    inline_len: usize,
    borrowed: &'r [u8],
    /// Shown in logs and stats (the path of a file).
    label: &'r [u8],
    hash: u64,
}

impl RequestKey<'_> {
    fn bytes(&self) -> &[u8] {
        if self.inline_len > 0 {
            &self.inline[..self.inline_len]
        } else {
            self.borrowed
        }
    }
}

/// Device and inode of a file key.
pub fn file_id(key: &[u8]) -> (u64, u64) {
    let word = |range: core::ops::Range<usize>| {
        key.get(range)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    (word(0..8), word(8..16))
}

/// Human form of a key for log lines.
pub fn display_key(kind: KeyKind, key: &[u8], label: &[u8]) -> String {
    match kind {
        KeyKind::Ip => match key.len() {
            4 => format!("ip {}", Ipv4Addr::new(key[0], key[1], key[2], key[3])),
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(key);
                format!("ip {}", Ipv6Addr::from(octets))
            }
            _ => format!("ip {}", key.escape_ascii()),
        },
        KeyKind::File => {
            let (dev, ino) = file_id(key);
            format!("file {} (dev {dev} inode {ino})", label.escape_ascii())
        }
        KeyKind::Path => format!("file {}", key.escape_ascii()),
        KeyKind::Host => format!("host {}", key.escape_ascii()),
        KeyKind::Key => format!("key {}", key.escape_ascii()),
    }
}

/// Computes the key of `limit` for `r`; `None` when there is none to count
/// (an empty `key=` value, as limit_conn does with an empty key).
fn request_key<'r>(
    r: &'r mut ngx_http_request_t,
    limit: &'r Limit,
) -> Result<Option<RequestKey<'r>>, ()> {
    let zone = zone_ctx(limit.shm_zone).ok_or(())?;
    let mut key = RequestKey {
        limit,
        zone,
        kind: KeyKind::Ip,
        inline: [0; 16],
        inline_len: 0,
        borrowed: &[],
        label: &[],
        hash: 0,
    };
    match limit.kind {
        LimitKind::Ip => {
            // SAFETY: the connection and its sockaddr live as long as the request.
            let sa = unsafe { &*(*r.connection).sockaddr };
            match sa.sa_family as u32 {
                AF_INET => {
                    // SAFETY: the family says this is a sockaddr_in.
                    let sin = unsafe { &*(sa as *const sockaddr as *const sockaddr_in) };
                    key.inline[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                    key.inline_len = 4;
                }
                AF_INET6 => {
                    // SAFETY: the family says this is a sockaddr_in6.
                    let sin6 = unsafe { &*(sa as *const sockaddr as *const sockaddr_in6) };
                    // SAFETY: in6_addr is 16 plain bytes whatever its union view.
                    key.inline
                        .copy_from_slice(unsafe { &sin6.sin6_addr.__in6_u.__u6_addr8 });
                    key.inline_len = 16;
                }
                // unix sockets: all clients share one key
                _ => key.borrowed = b"unix:",
            }
        }
        LimitKind::Host => {
            key.kind = KeyKind::Host;
            // nginx already lowercased the Host and cut its port and trailing dot
            let host = str_bytes(&r.headers_in.server);
            key.borrowed = if host.is_empty() {
                // HTTP/1.0 without Host: the virtual host is the server block
                NgxHttpCoreModule::server_conf(&*r)
                    .map_or(&[][..], |cscf| str_bytes(&cscf.server_name))
            } else {
                host
            };
        }
        LimitKind::Key(cv) => {
            key.kind = KeyKind::Key;
            let mut value = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            // SAFETY: cv was compiled at configuration time; the result lives in r->pool.
            if unsafe { ngx_http_complex_value(r, cv, &mut value) } != NGX_OK as ngx_int_t {
                return Err(());
            }
            if value.len == 0 {
                return Ok(None);
            }
            key.borrowed = str_bytes(&value);
        }
        LimitKind::File => {
            let mut path = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            let mut root: usize = 0;
            // SAFETY: maps the URI in r->pool; the result is NUL-terminated at `last`.
            let last = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root, 0) };
            if last.is_null() {
                return Err(());
            }
            path.len = last as usize - path.data as usize;
            let path_bytes = str_bytes(&path);
            // SAFETY: ngx_http_map_uri_to_path wrote a NUL at `last`.
            let cpath = unsafe { CStr::from_ptr(path.data as *const core::ffi::c_char) };
            key.label = path_bytes;
            match nix::sys::stat::stat(cpath) {
                Ok(st) => {
                    key.kind = KeyKind::File;
                    key.inline[..8].copy_from_slice(&(st.st_dev).to_ne_bytes());
                    key.inline[8..].copy_from_slice(&(st.st_ino).to_ne_bytes());
                    key.inline_len = 16;
                }
                Err(_) => {
                    // no such file: count by the path so the limit still holds
                    key.kind = KeyKind::Path;
                    key.borrowed = path_bytes;
                }
            }
        }
    }
    key.hash = key_hash(key.kind, key.bytes());
    Ok(Some(key))
}

/// The PREACCESS phase handler (vlimit and lalimit).
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn preaccess_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { &mut *r };
    if !ptr::eq(r.main, r) {
        return DECLINED;
    }
    let Some(lcf) = HttpVlimitModule::location_conf(&*r) else {
        return DECLINED;
    };
    if let Some(Some(la)) = lcf.lalimit {
        if let Some(main) = HttpVlimitModule::main_conf(&*r) {
            if let Some(status) = lalimit::check(r, &la, &main.load_source) {
                return status as ngx_int_t;
            }
        }
    }
    if lcf.limits.is_empty() || find_hold(r).is_some() {
        return DECLINED;
    }
    count_request(r, lcf)
}

/// Value of a `key=` limit that makes the counting pass sleep while it
/// holds the zone lock, when the worker's environment has
/// `VLIMIT_TEST_LOCK_SLEEP_MS` (nginx passes it only with an `env`
/// directive). Lets the tests kill a worker inside the lock.
const TEST_SLEEP_KEY: &[u8] = b"vlimit-test-sleep-in-lock";

fn test_hook_sleep_in_lock(keys: &[RequestKey]) {
    if !keys
        .iter()
        .any(|k| k.kind == KeyKind::Key && k.bytes() == TEST_SLEEP_KEY)
    {
        return;
    }
    let ms = std::env::var("VLIMIT_TEST_LOCK_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = ms {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Distinct zones one scope's limits may use (checked by the directive).
pub const MAX_ZONES: usize = 4;

/// The keys of every limit of the location, in the request pool (no heap
/// allocation on the request path).
fn request_keys<'r>(r: *mut ngx_http_request_t, lcf: &'r LocConf) -> Option<&'r [RequestKey<'r>]> {
    let n = lcf.limits.len();
    // SAFETY: r is the live request; the array is written before it is read
    // and RequestKey holds no resources to drop.
    unsafe {
        let keys = ngx_palloc((*r).pool, n * core::mem::size_of::<RequestKey>()) as *mut RequestKey;
        if keys.is_null() {
            return None;
        }
        let mut len = 0;
        for limit in &lcf.limits {
            match request_key(&mut *r, limit) {
                Ok(Some(key)) => {
                    ptr::write(keys.add(len), key);
                    len += 1;
                }
                Ok(None) => {}
                Err(()) => return None,
            }
        }
        Some(core::slice::from_raw_parts(keys, len))
    }
}

/// Why a request was turned away, for the log line.
struct Refusal {
    limit_index: usize,
    count: u32,
    zone_full: bool,
}

fn count_request(r: &mut ngx_http_request_t, lcf: &LocConf) -> ngx_int_t {
    let r_ptr: *mut ngx_http_request_t = r;
    let Some(hold) = new_hold(r, lcf.limits.len()) else {
        return ERROR;
    };
    let Some(keys) = request_keys(r_ptr, lcf) else {
        return ERROR;
    };
    if keys.is_empty() {
        return DECLINED;
    }

    // lock every zone involved, always in address order
    let mut zones: [Option<&ZoneCtx>; MAX_ZONES] = [None; MAX_ZONES];
    let mut zone_count = 0;
    for key in keys.iter() {
        if !zones[..zone_count]
            .iter()
            .any(|z| z.is_some_and(|z| ptr::eq(z, key.zone)))
            && zone_count < MAX_ZONES
        {
            zones[zone_count] = Some(key.zone);
            zone_count += 1;
        }
    }
    zones[..zone_count].sort_by_key(|z| z.map_or(0, |z| z as *const ZoneCtx as usize));
    let mut locks: [Option<Locked>; MAX_ZONES] = [None, None, None, None];
    for (lock, zone) in locks.iter_mut().zip(&zones[..zone_count]) {
        match zone.and_then(ZoneCtx::lock) {
            Some(locked) => *lock = Some(locked),
            None => return ERROR,
        }
    }
    let lock_of = |zone: &ZoneCtx| {
        zones[..zone_count]
            .iter()
            .position(|z| z.is_some_and(|z| ptr::eq(z, zone)))
            .unwrap_or(0)
    };

    let slot = hold.slot;
    let mut refusal: Option<Refusal> = None;
    let mut max_count = 0;
    for (i, key) in keys.iter().enumerate() {
        let Some(locked) = locks[lock_of(key.zone)].as_mut() else {
            return ERROR;
        };
        let table = &mut locked.table;
        let bytes = key.bytes();
        let idx = match table.find(key.kind, bytes, key.hash) {
            Some(idx) => idx,
            None => match table.insert(key.kind, bytes, key.label, key.hash) {
                Some(idx) => idx,
                None => {
                    table.header().zone_full += 1;
                    refusal = Some(Refusal {
                        limit_index: i,
                        count: 0,
                        zone_full: true,
                    });
                    break;
                }
            },
        };
        let entry = table.entry(idx);
        if entry.count >= key.limit.max {
            entry.rejections += 1;
            let count = entry.count;
            table.header().rejections += 1;
            refusal = Some(Refusal {
                limit_index: i,
                count,
                zone_full: false,
            });
            break;
        }
        if !table.acquire(idx, slot) {
            table.free_if_unused(idx);
            table.header().zone_full += 1;
            refusal = Some(Refusal {
                limit_index: i,
                count: 0,
                zone_full: true,
            });
            break;
        }
        let entry = table.entry(idx);
        entry.limit = key.limit.max;
        max_count = max_count.max(entry.count);
        // SAFETY: held has room for one entry per limit of this location.
        unsafe {
            *hold.held.add(hold.held_len) = Held {
                shm_zone: key.limit.shm_zone,
                entry: idx,
            }
        };
        hold.held_len += 1;
    }
    test_hook_sleep_in_lock(keys);
    if refusal.is_some() {
        // nothing stays counted for a refused request
        for held in held_slice(hold) {
            if let Some(locked) =
                zone_ctx(held.shm_zone).and_then(|zone| locks[lock_of(zone)].as_mut())
            {
                locked.table.release(held.entry, slot);
            }
        }
        hold.held_len = 0;
    }
    drop(locks);

    let Some(refusal) = refusal else {
        hold.status = VlimitStatus::Passed;
        hold.count = max_count;
        return DECLINED;
    };
    let key = &keys[refusal.limit_index];
    let dry_run = lcf.dry_run();
    let status = if refusal.zone_full {
        NGX_HTTP_SERVICE_UNAVAILABLE as ngx_uint_t
    } else {
        key.limit.status
    };
    hold.count = refusal.count;
    hold.status = match (refusal.zone_full, dry_run) {
        (_, true) => VlimitStatus::RejectedDryRun,
        (true, false) => VlimitStatus::ZoneFull,
        (false, false) => VlimitStatus::Rejected,
    };
    let outcome = if dry_run {
        String::from("not rejecting (dry run)")
    } else {
        format!("rejecting with {status}")
    };
    // SAFETY: the connection's log carries the client and request context.
    let log = unsafe { (*r.connection).log };
    let shown = display_key(key.kind, key.bytes(), key.label);
    if refusal.zone_full {
        rate_limited_log(
            log,
            NGX_LOG_ERR,
            &format!(
                "vlimit: zone \"{}\" is full, cannot count new key \"{}\", {}",
                key.zone.name, shown, outcome
            ),
        );
    } else {
        rate_limited_log(
            log,
            NGX_LOG_WARN,
            &format!(
                "vlimit: zone \"{}\" key \"{}\" count {} limit {}, {}",
                key.zone.name, shown, refusal.count, key.limit.max, outcome
            ),
        );
    }
    if dry_run {
        DECLINED
    } else {
        status as ngx_int_t
    }
}
