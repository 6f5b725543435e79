//! The PREACCESS handler: checks and counts every `vlimit` of a main request
//! under the zone lock, and the pool cleanup that gives the counts back
//! however the request ends.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};

use super::conf::{zone_ctx, Limit, LimitKind, LocConf};
use super::key::KeyKind;
use super::zone::{Key, Table, ZoneCtx};
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
    /// What the zone looks up; borrowed bytes (host, key, long path) live
    /// in the request pool or the configuration, which outlive the key.
    key: Key<'static>,
    /// The `vlimit` line (configuration memory, outlives the request).
    limit: *const Limit,
    zone: *const ZoneCtx,
    /// Shown in logs and stats (the path of a file).
    label: *const u8,
    label_len: usize,
}

impl RequestKey {
    fn bytes(&self) -> &[u8] {
        self.key.bytes()
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
    /// Room for one per limit of the location.
    held: *mut Held,
    /// The one zone of every held count (null: see each `Held`).
    zone: *const ZoneCtx,
    /// The worker's reusable record this hold lives in (null: the request pool).
    record: *mut HoldRecord,
}

/// A pool cleanup with its hold, reused by the requests of this worker, so
/// the request path allocates nothing in the request pool (where one more
/// allocation moves the request's later ones to a second pool block). It
/// is linked into the request pool's cleanup chain and goes back to the
/// free list when the cleanup has run; it is never freed (nginx reads the
/// cleanup's `next` after the handler returns).
#[repr(C)]
struct HoldRecord {
    cleanup: ngx_pool_cleanup_t,
    hold: RequestHold,
    held: [Held; STACK_KEYS],
    next_free: *mut HoldRecord,
}

/// The worker's free hold records (the worker runs requests on one thread).
static FREE_RECORDS: AtomicPtr<HoldRecord> = AtomicPtr::new(ptr::null_mut());

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

/// `worker_slot()` of this worker, kept by `init_worker_state` for the request path.
static WORKER_SLOT: AtomicU32 = AtomicU32::new(0);

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
/// taken without its release being registered), linked into the request
/// pool's cleanup chain as `ngx_pool_cleanup_add` would. Up to
/// `STACK_KEYS` limits it uses a reusable record of the worker; more take
/// one allocation from the request pool.
fn new_hold<'a>(r: &ngx_http_request_t, capacity: usize) -> Option<&'a mut RequestHold> {
    // SAFETY: records come from the free list or the heap and are owned by
    // this request until its cleanup gives them back; the pool allocation
    // is aligned to a pointer, which all parts need; everything is
    // initialised before use.
    unsafe {
        let (cln, hold) = if capacity <= STACK_KEYS {
            let record = FREE_RECORDS.load(Ordering::Relaxed);
            let record = if record.is_null() {
                new_record()?
            } else {
                FREE_RECORDS.store((*record).next_free, Ordering::Relaxed);
                record
            };
            // a record keeps its handler, data, slot and `held` between requests
            let hold = ptr::addr_of_mut!((*record).hold);
            (*hold).status = VlimitStatus::Passed;
            (*hold).count = 0;
            (*hold).held_len = 0;
            (*hold).zone = ptr::null();
            (ptr::addr_of_mut!((*record).cleanup), hold)
        } else {
            let size = size_of::<ngx_pool_cleanup_t>() + size_of::<RequestHold>() + capacity * size_of::<Held>();
            let cln = ngx_palloc(r.pool, size) as *mut ngx_pool_cleanup_t;
            if cln.is_null() {
                return None;
            }
            let hold = cln.add(1) as *mut RequestHold;
            init_hold(cln, hold, hold.add(1) as *mut Held, ptr::null_mut());
            (cln, hold)
        };
        (*cln).next = (*r.pool).cleanup;
        (*r.pool).cleanup = cln;
        Some(&mut *hold)
    }
}

/// A new record of the worker (the free list is empty).
fn new_record() -> Option<*mut HoldRecord> {
    // SAFETY: a heap allocation of the record's layout (never freed: see
    // HoldRecord), initialised before use.
    unsafe {
        let record = std::alloc::alloc(std::alloc::Layout::new::<HoldRecord>()) as *mut HoldRecord;
        if record.is_null() {
            return None;
        }
        let held = ptr::addr_of_mut!((*record).held) as *mut Held;
        init_hold(ptr::addr_of_mut!((*record).cleanup), ptr::addr_of_mut!((*record).hold), held, record);
        Some(record)
    }
}

/// Writes a hold and its pool cleanup (not yet linked into a pool).
///
/// # Safety
/// The pointers are valid for writes; `held` has room for the location's limits.
unsafe fn init_hold(cln: *mut ngx_pool_cleanup_t, hold: *mut RequestHold, held: *mut Held, record: *mut HoldRecord) {
    let slot = WORKER_SLOT.load(Ordering::Relaxed);
    // SAFETY: per the contract.
    unsafe {
        ptr::write(
            hold,
            RequestHold { status: VlimitStatus::Passed, count: 0, slot, held_len: 0, held, zone: ptr::null(), record },
        );
        ptr::write(
            cln,
            ngx_pool_cleanup_t { handler: Some(CLEANUP), data: hold as *mut c_void, next: ptr::null_mut() },
        );
    }
}

/// Pool cleanup: gives back every count of the request.
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: data is the RequestHold written by new_hold.
    let hold = unsafe { &mut *(data as *mut RequestHold) };
    release_all(hold);
    let record = hold.record;
    if !record.is_null() {
        // SAFETY: the record is this request's; nginx still reads its
        // `cleanup.next`, which the free list leaves alone.
        unsafe { (*record).next_free = FREE_RECORDS.load(Ordering::Relaxed) };
        FREE_RECORDS.store(record, Ordering::Relaxed);
    }
}

fn release_all(hold: &mut RequestHold) {
    let held = hold.held();
    if held.is_empty() {
        return;
    }
    if !hold.zone.is_null() {
        // every count is in one zone: one lock
        // SAFETY: the zone context lives in the cycle pool, which outlives the request.
        let zone = unsafe { &*hold.zone };
        if let Some(mut locked) = zone.lock() {
            for held in held {
                locked.table.release(held.entry, hold.slot);
            }
        }
        hold.held_len = 0;
        return;
    }
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

/// Longest `$request_filename` built in the worker's path buffer (longer
/// paths use the request pool).
const PATH_BUF: usize = 4096;

/// The worker's buffer for `$request_filename`. The `root` of the last
/// location stays at its start, so the next request of that location
/// copies only its URI.
struct PathBuf {
    /// `CONF_GENERATION` and location of the root in front (a reload in a
    /// single-process nginx may reuse a location's address).
    generation: u64,
    clcf: *const ngx_http_core_loc_conf_t,
    root_len: usize,
    bytes: [u8; PATH_BUF],
}

/// A value only the worker's one thread touches (nginx runs a worker's
/// requests on one thread, and never re-enters a phase handler).
struct WorkerCell<T>(UnsafeCell<T>);

// SAFETY: see WorkerCell: one thread per worker process uses it.
unsafe impl<T> Sync for WorkerCell<T> {}

static PATH_BUF_CELL: WorkerCell<PathBuf> =
    WorkerCell(UnsafeCell::new(PathBuf { generation: 0, clcf: ptr::null(), root_len: 0, bytes: [0; PATH_BUF] }));

/// Bumped by every configuration load, to invalidate per-worker caches.
pub static CONF_GENERATION: AtomicU64 = AtomicU64::new(1);

/// `$request_filename` of `r`, NUL-terminated right after the returned
/// bytes, which stay valid until the next request's handler. For a `root`
/// without variables (the usual case) it is `root` + URI as
/// `ngx_http_map_uri_to_path` would build it, without its pool allocation;
/// `alias`, variables and long paths go through nginx's function.
fn file_path<'b>(r: &mut ngx_http_request_t) -> Option<&'b [u8]> {
    let clcf = NgxHttpCoreModule::location_conf(&*r)?;
    let (root, uri) = (str_bytes(&clcf.root), str_bytes(&r.uri));
    let len = root.len() + uri.len();
    if clcf.alias == 0 && clcf.root_lengths.is_null() && len < PATH_BUF {
        // SAFETY: only this thread uses the buffer, and no caller holds a
        // path of an earlier request; root and URI fit with the NUL.
        unsafe {
            let buf = &mut *PATH_BUF_CELL.0.get();
            let generation = CONF_GENERATION.load(Ordering::Relaxed);
            if !ptr::eq(buf.clcf, clcf) || buf.generation != generation {
                buf.bytes[..root.len()].copy_from_slice(root);
                (buf.clcf, buf.generation, buf.root_len) = (clcf, generation, root.len());
            }
            let at = buf.bytes.as_mut_ptr();
            ptr::copy_nonoverlapping(uri.as_ptr(), at.add(buf.root_len), uri.len());
            *at.add(len) = 0;
            return Some(core::slice::from_raw_parts(at, len));
        }
    }
    let mut path = ngx_str_t { len: 0, data: ptr::null_mut() };
    let mut root_len: usize = 0;
    // SAFETY: maps the URI in r->pool; the result is NUL-terminated at `last`.
    let last = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root_len, 0) };
    if last.is_null() {
        return None;
    }
    // SAFETY: path.data..last is the path nginx wrote, in the request pool.
    Some(unsafe { core::slice::from_raw_parts(path.data, last as usize - path.data as usize) })
}

/// Computes the key of `limit` for `r` into `key`; false when there is
/// none to count (an empty `key=` value, as limit_conn does with an empty key).
fn request_key(r: &mut ngx_http_request_t, limit: &Limit, key: &mut RequestKey) -> Result<bool, ()> {
    key.limit = limit;
    key.zone = zone_ctx(limit.shm_zone).ok_or(())?;
    key.label = ptr::null();
    key.label_len = 0;
    match limit.kind {
        LimitKind::Ip => {
            key.key = Key::empty(KeyKind::Ip.tag());
            // SAFETY: the connection and its sockaddr live as long as the request.
            let sa = unsafe { &*(*r.connection).sockaddr };
            match sa.sa_family as u32 {
                AF_INET => {
                    // SAFETY: the family says this is a sockaddr_in.
                    let sin = unsafe { &*(sa as *const sockaddr as *const sockaddr_in) };
                    key.key.small_mut()[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                    key.key.len = 4;
                }
                AF_INET6 => {
                    // SAFETY: the family says this is a sockaddr_in6.
                    let sin6 = unsafe { &*(sa as *const sockaddr as *const sockaddr_in6) };
                    // SAFETY: in6_addr is 16 plain bytes whatever its union view.
                    *key.key.small_mut() = unsafe { sin6.sin6_addr.__in6_u.__u6_addr8 };
                    key.key.len = 16;
                }
                // unix sockets: all clients share one key
                _ => key.key.set_bytes(b"unix:"),
            }
        }
        LimitKind::Host => {
            key.key = Key::empty(KeyKind::Host.tag());
            // nginx already lowercased the Host and cut its port and trailing dot
            let host = str_bytes(&r.headers_in.server);
            let host = if host.is_empty() {
                // HTTP/1.0 without Host: the virtual host is the server block
                NgxHttpCoreModule::server_conf(&*r).map_or(&[][..], |cscf| str_bytes(&cscf.server_name))
            } else {
                host
            };
            // SAFETY: the Host lives in the request, the server name in the configuration.
            key.key.set_bytes(unsafe { detach(host) });
        }
        LimitKind::Key(cv) => {
            key.key = Key::empty(KeyKind::Key.tag());
            let mut value = ngx_str_t { len: 0, data: ptr::null_mut() };
            // SAFETY: cv was compiled at configuration time; the result lives in r->pool.
            if unsafe { ngx_http_complex_value(r, cv, &mut value) } != NGX_OK as ngx_int_t {
                return Err(());
            }
            if value.len == 0 {
                return Ok(false);
            }
            // SAFETY: the value lives in the request pool.
            key.key.set_bytes(unsafe { detach(str_bytes(&value)) });
        }
        LimitKind::File => {
            let path = file_path(r).ok_or(())?;
            key.label = path.as_ptr();
            key.label_len = path.len();
            // SAFETY: file_path NUL-terminates the path right after its last byte.
            let cpath = unsafe {
                CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(path.as_ptr(), path.len() + 1))
            };
            // stat follows symlinks: aliases of one file share its device+inode
            match nix::sys::stat::fstatat(None, cpath, nix::fcntl::AtFlags::empty()) {
                Ok(st) => {
                    key.key = Key::empty(KeyKind::File.tag());
                    key.key.words = [st.st_dev, st.st_ino];
                    key.key.len = 16;
                }
                Err(_) => {
                    // no such file: count by the path so the limit still holds
                    key.key = Key::empty(KeyKind::Path.tag());
                    // SAFETY: the path lives in the worker's buffer or the request pool until the handler returns.
                    key.key.set_bytes(unsafe { detach(path) });
                }
            }
        }
    }
    // SAFETY: key.zone was set above from this cycle's zone, which outlives the request.
    key.key.hash_it(unsafe { (*key.zone).hasher() });
    Ok(true)
}

/// Bytes of the request or the configuration as a key's `'static` bytes.
///
/// # Safety
/// The bytes outlive every `RequestKey` (which live on the handler's stack).
unsafe fn detach(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: per the contract.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
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

/// Keeps the worker's slot and reads the test hook's setting (`init_process`).
pub fn init_worker_state() {
    WORKER_SLOT.store(worker_slot(), Ordering::Relaxed);
    let ms = std::env::var("VLIMIT_TEST_LOCK_SLEEP_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    TEST_LOCK_SLEEP_MS.store(ms, Ordering::Relaxed);
}

fn test_hook_sleep_in_lock(keys: &[RequestKey]) {
    let ms = TEST_LOCK_SLEEP_MS.load(Ordering::Relaxed);
    if ms == 0 || !keys.iter().any(|k| k.key.kind == KeyKind::Key.tag() && k.bytes() == TEST_SLEEP_KEY) {
        return;
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Distinct zones one scope's limits may use (checked by the directive).
pub const MAX_ZONES: usize = 4;

/// Limits whose keys live on the stack and whose hold fits a reusable
/// record; more go to the request pool.
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
struct ZoneLocks {
    zones: [*const ZoneCtx; MAX_ZONES],
    locked: usize,
}

impl ZoneLocks {
    /// Locks the zones of the location's limits (worked out by the
    /// directive), in the order of their shared memory addresses, which
    /// every process and every configuration generation agree on; false
    /// if one is not initialised (what was locked is unlocked on drop).
    #[inline]
    fn lock(&mut self, lcf: &LocConf) -> bool {
        let shm_zones = &lcf.limit_zones[..lcf.limit_zones.len().min(MAX_ZONES)];
        for (i, &shm_zone) in shm_zones.iter().enumerate() {
            let Some(zone) = zone_ctx(shm_zone) else {
                return false;
            };
            self.zones[i] = zone;
        }
        // usually every limit uses one zone
        if shm_zones.len() > 1 {
            // SAFETY: the zone contexts live in the cycle pool.
            self.zones[..shm_zones.len()].sort_unstable_by_key(|&z| unsafe { (*z).shpool } as usize);
        }
        for &zone in &self.zones[..shm_zones.len()] {
            // SAFETY: as above.
            if !unsafe { (*zone).lock_raw() } {
                return false;
            }
            self.locked += 1;
        }
        self.locked > 0
    }

    /// The table of one of the locked zones.
    #[inline]
    fn table(&self, zone: &ZoneCtx) -> Table {
        debug_assert!(self.zones[..self.locked].iter().any(|&z| ptr::eq(z, zone)));
        // SAFETY: every zone of the request's keys is locked while self lives.
        unsafe { zone.table() }
    }
}

impl Drop for ZoneLocks {
    fn drop(&mut self) {
        for &zone in &self.zones[..self.locked] {
            // SAFETY: the first `locked` zones were locked by `ZoneLocks::lock`.
            unsafe { (*zone).unlock_raw() };
        }
    }
}

/// Counts the request on one key of a locked table: the entry's index and
/// its count after this request, or why it cannot be counted.
#[inline(always)]
fn count_key(table: &mut Table, key: &RequestKey, slot: u32, key_index: usize) -> Result<(u32, u32), Refusal> {
    let idx = match table.find(&key.key) {
        Some(idx) => idx,
        None => match table.insert(&key.key, key.label()) {
            Some(idx) => idx,
            None => {
                table.header().zone_full += 1;
                return Err(Refusal { key_index, count: 0, zone_full: true });
            }
        },
    };
    let max = key.limit().max;
    let entry = table.entry(idx);
    if entry.count >= max {
        entry.rejections = entry.rejections.saturating_add(1);
        let count = entry.count;
        table.header().rejections += 1;
        return Err(Refusal { key_index, count, zone_full: false });
    }
    if !table.acquire(idx, slot) {
        // the entry stays idle (reusable); only the ledger is full
        table.header().zone_full += 1;
        return Err(Refusal { key_index, count: 0, zone_full: true });
    }
    let entry = table.entry(idx);
    // a limit is at most 65535 (checked by the directive)
    entry.limit = max as u16;
    Ok((idx, entry.count))
}

/// Counts the request on every key (all or nothing), under the zones'
/// locks; the usual case, every limit in one zone, takes one lock and
/// records that zone in the hold for the release.
fn count_keys(hold: &mut RequestHold, lcf: &LocConf, keys: &[RequestKey]) -> Result<(), Option<Refusal>> {
    let slot = hold.slot;
    let held = hold.held;
    let mut held_len = 0;
    let mut max_count = 0;
    if lcf.limit_zones.len() == 1 {
        let zone = keys[0].zone();
        if !zone.lock_raw() {
            return Err(None);
        }
        // SAFETY: the zone is locked until the unlock below.
        let mut table = unsafe { zone.table() };
        let mut refusal = None;
        for (i, key) in keys.iter().enumerate() {
            match count_key(&mut table, key, slot, i) {
                Ok((idx, count)) => {
                    max_count = max_count.max(count);
                    // SAFETY: held has room for one entry per limit of the location.
                    unsafe { held.add(held_len).write(Held { zone: key.zone, entry: idx }) };
                    held_len += 1;
                }
                Err(r) => {
                    refusal = Some(r);
                    break;
                }
            }
        }
        test_hook_sleep_in_lock(keys);
        hold.held_len = held_len;
        hold.zone = zone;
        if refusal.is_some() {
            // nothing stays counted for a refused request
            for held in hold.held() {
                table.release(held.entry, slot);
            }
            hold.held_len = 0;
        }
        // SAFETY: locked above.
        unsafe { zone.unlock_raw() };
        return match refusal {
            None => {
                hold.count = max_count;
                Ok(())
            }
            Some(refusal) => Err(Some(refusal)),
        };
    }
    let mut locks = ZoneLocks { zones: [ptr::null(); MAX_ZONES], locked: 0 };
    if !locks.lock(lcf) {
        return Err(None);
    }
    let mut refusal = None;
    for (i, key) in keys.iter().enumerate() {
        match count_key(&mut locks.table(key.zone()), key, slot, i) {
            Ok((idx, count)) => {
                max_count = max_count.max(count);
                // SAFETY: held has room for one entry per limit of the location.
                unsafe { held.add(held_len).write(Held { zone: key.zone, entry: idx }) };
                held_len += 1;
            }
            Err(r) => {
                refusal = Some(r);
                break;
            }
        }
    }
    hold.held_len = held_len;
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
    match count_keys(hold, lcf, keys) {
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
    let shown =
        KeyKind::from_tag(key.key.kind).map(|kind| display_key(kind, key.bytes(), key.label())).unwrap_or_default();
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
