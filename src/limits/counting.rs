//! The PREACCESS handler: checks and counts every `vlimit` of a main request
//! under the zone lock, and the pool cleanup that gives the counts back
//! however the request ends.

use core::ffi::c_void;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};

use super::conf::{zone_ctx, Limit, LimitKind, LocConf};
use super::zone::{key_hash, KeyKind, Table, ZoneCtx};
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

/// One limit's key for a request, computed before the lock is taken
/// (filled in place, on the stack).
struct RequestKey {
    /// The `vlimit` line (configuration memory, outlives the request).
    limit: *const Limit,
    zone: *const ZoneCtx,
    hash: u64,
    /// The key bytes when they are not `inline` (host, key, path).
    borrowed: *const u8,
    len: usize,
    /// Shown in logs and stats (the path of a file).
    label: *const u8,
    label_len: usize,
    kind: KeyKind,
    /// Address or device+inode.
    inline: [u8; 16],
}

impl RequestKey {
    fn bytes(&self) -> &[u8] {
        if self.borrowed.is_null() {
            &self.inline[..self.len]
        } else {
            // SAFETY: borrowed points at len bytes of the request pool or
            // configuration, which outlive the key.
            unsafe { core::slice::from_raw_parts(self.borrowed, self.len) }
        }
    }

    fn label(&self) -> &[u8] {
        if self.label.is_null() {
            return &[];
        }
        // SAFETY: as for borrowed.
        unsafe { core::slice::from_raw_parts(self.label, self.label_len) }
    }

    fn limit(&self) -> &Limit {
        // SAFETY: the location configuration outlives its requests.
        unsafe { &*self.limit }
    }

    /// The key's zone (cycle memory: valid for the request).
    fn zone<'z>(&self) -> &'z ZoneCtx {
        // SAFETY: the zone context lives in the cycle pool, as the configuration.
        unsafe { &*self.zone }
    }
}

/// One count a request holds.
#[derive(Clone, Copy)]
struct Held {
    zone: *const ZoneCtx,
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
    /// Room for one per limit of the location, right after this struct.
    held: *mut Held,
}

impl RequestHold {
    fn held<'a>(&self) -> &'a [Held] {
        // SAFETY: held points at held_len initialised entries in the request pool.
        unsafe { core::slice::from_raw_parts(self.held, self.held_len) }
    }
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
/// taken without its release being registered). The pool cleanup, the hold
/// and its `Held` array are one allocation, linked into the request pool's
/// cleanup chain as `ngx_pool_cleanup_add` would.
fn new_hold<'a>(r: &ngx_http_request_t, capacity: usize) -> Option<&'a mut RequestHold> {
    let size = size_of::<ngx_pool_cleanup_t>() + size_of::<RequestHold>() + capacity * size_of::<Held>();
    // SAFETY: one allocation from the live request pool (aligned to a
    // pointer, which all three parts need), initialised before use.
    unsafe {
        let cln = ngx_palloc(r.pool, size) as *mut ngx_pool_cleanup_t;
        if cln.is_null() {
            return None;
        }
        let hold = cln.add(1) as *mut RequestHold;
        ptr::write(
            hold,
            RequestHold {
                status: VlimitStatus::Passed,
                count: 0,
                slot: worker_slot(),
                held_len: 0,
                held: hold.add(1) as *mut Held,
            },
        );
        ptr::write(
            cln,
            ngx_pool_cleanup_t { handler: Some(CLEANUP), data: hold as *mut c_void, next: (*r.pool).cleanup },
        );
        (*r.pool).cleanup = cln;
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
    let held = hold.held();
    let mut i = 0;
    while i < held.len() {
        // SAFETY: the zone context lives in the cycle pool, which outlives
        // the request.
        let zone = unsafe { &*held[i].zone };
        let Some(mut locked) = zone.lock() else {
            i += 1;
            continue;
        };
        // release every count of this zone under one lock
        while i < held.len() && ptr::eq(held[i].zone, zone) {
            locked.table.release(held[i].entry, hold.slot);
            i += 1;
        }
    }
    hold.held_len = 0;
}

/// Device and inode of a file key.
pub fn file_id(key: &[u8]) -> (u64, u64) {
    let word =
        |range: core::ops::Range<usize>| key.get(range).and_then(|b| b.try_into().ok()).map_or(0, u64::from_ne_bytes);
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

/// Computes the key of `limit` for `r` into `key`; false when there is
/// none to count (an empty `key=` value, as limit_conn does with an empty key).
fn request_key(r: &mut ngx_http_request_t, limit: &Limit, key: &mut RequestKey) -> Result<bool, ()> {
    key.limit = limit;
    key.zone = zone_ctx(limit.shm_zone).ok_or(())?;
    key.borrowed = ptr::null();
    key.label = ptr::null();
    key.label_len = 0;
    let borrow = |key: &mut RequestKey, bytes: &[u8]| {
        key.borrowed = bytes.as_ptr();
        key.len = bytes.len();
    };
    match limit.kind {
        LimitKind::Ip => {
            key.kind = KeyKind::Ip;
            // SAFETY: the connection and its sockaddr live as long as the request.
            let sa = unsafe { &*(*r.connection).sockaddr };
            match sa.sa_family as u32 {
                AF_INET => {
                    // SAFETY: the family says this is a sockaddr_in.
                    let sin = unsafe { &*(sa as *const sockaddr as *const sockaddr_in) };
                    key.inline[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                    key.len = 4;
                }
                AF_INET6 => {
                    // SAFETY: the family says this is a sockaddr_in6.
                    let sin6 = unsafe { &*(sa as *const sockaddr as *const sockaddr_in6) };
                    // SAFETY: in6_addr is 16 plain bytes whatever its union view.
                    key.inline.copy_from_slice(unsafe { &sin6.sin6_addr.__in6_u.__u6_addr8 });
                    key.len = 16;
                }
                // unix sockets: all clients share one key
                _ => borrow(key, b"unix:"),
            }
        }
        LimitKind::Host => {
            key.kind = KeyKind::Host;
            // nginx already lowercased the Host and cut its port and trailing dot
            let host = str_bytes(&r.headers_in.server);
            let host = if host.is_empty() {
                // HTTP/1.0 without Host: the virtual host is the server block
                NgxHttpCoreModule::server_conf(&*r).map_or(&[][..], |cscf| str_bytes(&cscf.server_name))
            } else {
                host
            };
            borrow(key, host);
        }
        LimitKind::Key(cv) => {
            key.kind = KeyKind::Key;
            let mut value = ngx_str_t { len: 0, data: ptr::null_mut() };
            // SAFETY: cv was compiled at configuration time; the result lives in r->pool.
            if unsafe { ngx_http_complex_value(r, cv, &mut value) } != NGX_OK as ngx_int_t {
                return Err(());
            }
            if value.len == 0 {
                return Ok(false);
            }
            borrow(key, str_bytes(&value));
        }
        LimitKind::File => {
            let mut path = ngx_str_t { len: 0, data: ptr::null_mut() };
            let mut root: usize = 0;
            // SAFETY: maps the URI in r->pool; the result is NUL-terminated at `last`.
            let last = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root, 0) };
            if last.is_null() {
                return Err(());
            }
            path.len = last as usize - path.data as usize;
            key.label = path.data;
            key.label_len = path.len;
            // SAFETY: ngx_http_map_uri_to_path wrote a NUL at `last`.
            let cpath = unsafe { CStr::from_ptr(path.data as *const core::ffi::c_char) };
            // stat follows symlinks: aliases of one file share its device+inode
            match nix::sys::stat::stat(cpath) {
                Ok(st) => {
                    key.kind = KeyKind::File;
                    key.inline[..8].copy_from_slice(&(st.st_dev).to_ne_bytes());
                    key.inline[8..].copy_from_slice(&(st.st_ino).to_ne_bytes());
                    key.len = 16;
                }
                Err(_) => {
                    // no such file: count by the path so the limit still holds
                    key.kind = KeyKind::Path;
                    borrow(key, str_bytes(&path));
                }
            }
        }
    }
    key.hash = key_hash(key.kind, key.bytes());
    Ok(true)
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

/// `VLIMIT_TEST_LOCK_SLEEP_MS` of this worker (0: the hook is off), read
/// once at worker start so the request path does not look at the environment.
static TEST_LOCK_SLEEP_MS: AtomicU64 = AtomicU64::new(0);

/// Reads the test hook's setting (`init_process`).
pub fn init_test_hook() {
    let ms = std::env::var("VLIMIT_TEST_LOCK_SLEEP_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    TEST_LOCK_SLEEP_MS.store(ms, Ordering::Relaxed);
}

fn test_hook_sleep_in_lock(keys: &[RequestKey]) {
    let ms = TEST_LOCK_SLEEP_MS.load(Ordering::Relaxed);
    if ms == 0 || !keys.iter().any(|k| k.kind == KeyKind::Key && k.bytes() == TEST_SLEEP_KEY) {
        return;
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Distinct zones one scope's limits may use (checked by the directive).
pub const MAX_ZONES: usize = 4;

/// Limits whose keys live on the stack; more go to the request pool.
const STACK_KEYS: usize = 4;

/// Computes the keys of every limit of the location into `stack` or, for
/// more limits than it holds, into the request pool (no heap allocation on
/// the request path).
fn request_keys<'k>(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    stack: &'k mut [MaybeUninit<RequestKey>; STACK_KEYS],
) -> Option<&'k mut [RequestKey]> {
    let n = lcf.limits.len();
    let keys = if n <= STACK_KEYS {
        stack.as_mut_ptr() as *mut RequestKey
    } else {
        // SAFETY: an allocation from the live request pool.
        unsafe { ngx_palloc(r.pool, n * size_of::<RequestKey>()) as *mut RequestKey }
    };
    if keys.is_null() {
        return None;
    }
    let mut len = 0;
    for limit in &lcf.limits {
        // SAFETY: there is room for one key per limit; request_key writes
        // every field before anything reads it.
        let key = unsafe { &mut *keys.add(len) };
        match request_key(r, limit, key) {
            Ok(true) => len += 1,
            Ok(false) => {}
            Err(()) => return None,
        }
    }
    // SAFETY: the first len keys are initialised.
    Some(unsafe { core::slice::from_raw_parts_mut(keys, len) })
}

/// Why a request was turned away, for the log line.
struct Refusal {
    key_index: usize,
    count: u32,
    zone_full: bool,
}

/// The zones of a request's keys, locked in address order (so two
/// requests never wait on each other's zones); unlocked on drop.
struct ZoneLocks<'z> {
    zones: [&'z ZoneCtx; MAX_ZONES],
    locked: usize,
}

impl<'z> ZoneLocks<'z> {
    /// Locks the zones of `keys` (at least one); `None` if one is not
    /// initialised.
    #[inline]
    fn lock(keys: &[RequestKey]) -> Option<ZoneLocks<'z>> {
        let first = keys[0].zone();
        let mut locks = ZoneLocks { zones: [first; MAX_ZONES], locked: 0 };
        let mut len = 1;
        // usually every limit uses one zone
        for key in &keys[1..] {
            if !locks.zones[..len].iter().any(|&z| ptr::eq(z, key.zone)) && len < MAX_ZONES {
                locks.zones[len] = key.zone();
                len += 1;
            }
        }
        if len > 1 {
            locks.zones[..len].sort_unstable_by_key(|&z| z as *const ZoneCtx as usize);
        }
        for zone in &locks.zones[..len] {
            if !zone.lock_raw() {
                return None;
            }
            locks.locked += 1;
        }
        Some(locks)
    }

    /// The table of one of the locked zones.
    #[inline]
    fn table(&self, zone: &ZoneCtx) -> Table {
        debug_assert!(self.zones[..self.locked].iter().any(|&z| ptr::eq(z, zone)));
        // SAFETY: every zone of the request's keys is locked while self lives.
        unsafe { zone.table() }
    }
}

impl Drop for ZoneLocks<'_> {
    fn drop(&mut self) {
        for zone in &self.zones[..self.locked] {
            // SAFETY: the first `locked` zones were locked by `ZoneLocks::lock`.
            unsafe { zone.unlock_raw() };
        }
    }
}

/// Counts the request on every key (all or nothing), under the zones' locks.
fn count_keys(hold: &mut RequestHold, keys: &[RequestKey]) -> Result<(), Option<Refusal>> {
    let slot = hold.slot;
    let Some(locks) = ZoneLocks::lock(keys) else {
        return Err(None);
    };
    let mut refusal = None;
    let mut max_count = 0;
    for (i, key) in keys.iter().enumerate() {
        let mut table = locks.table(key.zone());
        let bytes = key.bytes();
        let idx = match table.find(key.kind, bytes, key.hash) {
            Some(idx) => idx,
            None => match table.insert(key.kind, bytes, key.label(), key.hash) {
                Some(idx) => idx,
                None => {
                    table.header().zone_full += 1;
                    refusal = Some(Refusal { key_index: i, count: 0, zone_full: true });
                    break;
                }
            },
        };
        let max = key.limit().max;
        let entry = table.entry(idx);
        if entry.count >= max {
            entry.rejections = entry.rejections.saturating_add(1);
            let count = entry.count;
            table.header().rejections += 1;
            refusal = Some(Refusal { key_index: i, count, zone_full: false });
            break;
        }
        if !table.acquire(idx, slot) {
            // the entry stays idle (reusable); only the ledger is full
            table.header().zone_full += 1;
            refusal = Some(Refusal { key_index: i, count: 0, zone_full: true });
            break;
        }
        let entry = table.entry(idx);
        // a limit is at most 65535 (checked by the directive)
        entry.limit = max as u16;
        max_count = max_count.max(entry.count);
        // SAFETY: held has room for one entry per limit of the location.
        unsafe { *hold.held.add(hold.held_len) = Held { zone: key.zone, entry: idx } };
        hold.held_len += 1;
    }
    test_hook_sleep_in_lock(keys);
    let Some(refusal) = refusal else {
        hold.count = max_count;
        return Ok(());
    };
    // nothing stays counted for a refused request
    for held in hold.held() {
        // SAFETY: the zone context lives in the cycle pool.
        locks.table(unsafe { &*held.zone }).release(held.entry, slot);
    }
    hold.held_len = 0;
    Err(Some(refusal))
}

fn count_request(r: &mut ngx_http_request_t, lcf: &LocConf) -> ngx_int_t {
    let Some(hold) = new_hold(r, lcf.limits.len()) else {
        return ERROR;
    };
    let mut stack = [const { MaybeUninit::uninit() }; STACK_KEYS];
    let Some(keys) = request_keys(r, lcf, &mut stack) else {
        return ERROR;
    };
    if keys.is_empty() {
        return DECLINED;
    }
    match count_keys(hold, keys) {
        Ok(()) => {
            hold.status = VlimitStatus::Passed;
            DECLINED
        }
        Err(None) => ERROR,
        Err(Some(refusal)) => refuse(r, lcf, hold, &keys[refusal.key_index], &refusal),
    }
}

/// Sets the request's status after a refusal, logs it and returns what the
/// handler answers.
#[cold]
fn refuse(
    r: &ngx_http_request_t,
    lcf: &LocConf,
    hold: &mut RequestHold,
    key: &RequestKey,
    refusal: &Refusal,
) -> ngx_int_t {
    let (max, limit_status) = (key.limit().max, key.limit().status);
    let zone = key.zone();
    let shown = display_key(key.kind, key.bytes(), key.label());
    let dry_run = lcf.dry_run();
    let status = if refusal.zone_full { NGX_HTTP_SERVICE_UNAVAILABLE as ngx_uint_t } else { limit_status };
    hold.count = refusal.count;
    hold.status = match (refusal.zone_full, dry_run) {
        (_, true) => VlimitStatus::RejectedDryRun,
        (true, false) => VlimitStatus::ZoneFull,
        (false, false) => VlimitStatus::Rejected,
    };
    let outcome = if dry_run { String::from("not rejecting (dry run)") } else { format!("rejecting with {status}") };
    // SAFETY: the connection's log carries the client and request context.
    let log = unsafe { (*r.connection).log };
    if refusal.zone_full {
        rate_limited_log(
            log,
            NGX_LOG_ERR,
            &format!("vlimit: zone \"{}\" is full, cannot count new key \"{}\", {}", zone.name, shown, outcome),
        );
    } else {
        rate_limited_log(
            log,
            NGX_LOG_WARN,
            &format!(
                "vlimit: zone \"{}\" key \"{}\" count {} limit {}, {}",
                zone.name, shown, refusal.count, max, outcome
            ),
        );
    }
    if dry_run {
        DECLINED
    } else {
        status as ngx_int_t
    }
}
