//! A shared-memory table of counters (vlimit's `vlimit_zone`): a fixed-size
//! hash table of fixed-size counters plus a per-worker ledger, all inside
//! one slab allocation.
//!
//! Layout (one block from the zone's slab pool, allocated at zone init):
//! `ZoneShared` header | buckets `[u32]` | entries `[Entry]` | holds `[Hold]`.
//! Entries are chained per bucket by index and never move, so a request can
//! keep an entry's index until it releases its count. The ledger that lets
//! a new worker give back what a dead one held: each entry records the
//! counts of one worker slot inline (the common case: one worker holds a
//! key) and a chain of `Hold`s for the other slots.
//!
//! An entry whose count returns to 0 stays in its bucket chain as an *idle*
//! entry, so the next request for the same key finds it again without
//! re-inserting it, and it joins the FIFO of reusable entries: a new key
//! takes over the oldest idle (or never used) entry. Idle entries are not
//! keys for the stats and count as free space; a zone is full only when
//! every entry holds a live count.
//!
//! Every access goes through [`Locked`], which holds the slab pool's own
//! mutex: the master force-unlocks that mutex when a worker dies holding it
//! (`ngx_unlock_mutexes` in `os/unix/ngx_process.c`).

use core::ffi::c_void;
use core::hash::{BuildHasher, Hasher};
use core::mem::{align_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use ngx::ffi::*;

/// End of a chain / empty bucket.
pub const NIL: u32 = u32::MAX;
/// Worker slots tracked by the ledger (`ngx_process_slot` is below this).
pub const MAX_SLOTS: usize = NGX_MAX_PROCESSES as usize;
/// Key bytes stored in an entry; longer keys keep a prefix plus their hash.
pub const KEY_INLINE: usize = 88;
/// Marks a zone laid out by this version of the code.
const MAGIC: u64 = 0x766c_696d_6974_0005;
/// Keys up to this length are stored zero-padded to it and compared as two words.
pub const KEY_SMALL: usize = 16;
/// `Entry::reuse_next` of an entry that is not in the reusable FIFO.
const NOT_QUEUED: u32 = u32::MAX - 1;

/// What a counter counts, chosen by the table's user (vlimit: `limits::KeyKind`);
/// part of a key's identity. 0 is reserved: it marks a never used entry.
pub type KeyTag = u8;

/// One counter. `kind == 0` marks a never used entry; `count == 0` an
/// idle one (still findable, reusable by any key).
#[repr(C)]
pub struct Entry {
    /// Next entry in the bucket chain.
    next: u32,
    pub count: u32,
    /// Head of this entry's ledger chain (slots other than `first_slot`).
    holds: u32,
    /// Next entry in the reusable FIFO, `NIL` at its tail, `NOT_QUEUED`
    /// when not in it. A queued entry may have been revived since; it is
    /// skipped when it reaches the head.
    reuse_next: u32,
    /// Counts held by worker slot `first_slot` (the inline ledger hold).
    first_count: u32,
    first_slot: u16,
    /// Limit of the last request admitted on this key, for stats.
    pub limit: u16,
    hash: u64,
    pub rejections: u32,
    /// Full length of the identity key.
    key_len: u16,
    /// Bytes of display label stored after the key (file kind: the path).
    label_len: u8,
    kind: u8,
    bytes: [u8; KEY_INLINE],
}

const _: () = assert!(size_of::<Entry>() == 128);

impl Entry {
    /// The key's tag, `None` for a free entry.
    pub fn kind(&self) -> Option<KeyTag> {
        (self.kind != 0).then_some(self.kind)
    }

    /// The stored key bytes (a prefix when the key was longer than `KEY_INLINE`).
    pub fn key(&self) -> &[u8] {
        &self.bytes[..(self.key_len as usize).min(KEY_INLINE)]
    }

    /// Whether the stored key was cut to fit.
    pub fn key_truncated(&self) -> bool {
        self.key_len as usize > KEY_INLINE
    }

    /// The display label (the path of a file key), possibly empty.
    pub fn label(&self) -> &[u8] {
        let start = label_start(self.key_len as usize);
        &self.bytes[start..start + self.label_len as usize]
    }

    /// The first two words of the stored key (zero-padded when shorter).
    #[inline]
    fn words(&self) -> [u64; 2] {
        let word = |at: usize| u64::from_ne_bytes(self.bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        [word(0), word(8)]
    }

    #[inline]
    fn matches(&self, key: &Key) -> bool {
        if self.kind != key.kind || self.hash != key.hash || self.key_len as usize != key.len {
            return false;
        }
        if key.len <= KEY_SMALL {
            // both sides are zero-padded: two compares cover the key
            return self.words() == key.words;
        }
        self.key() == &key.bytes()[..key.len.min(KEY_INLINE)]
    }
}

/// Counts one worker slot holds on one entry.
#[repr(C)]
struct Hold {
    next: u32,
    count: u32,
    slot: u32,
}

/// The zone header, at the start of the block.
#[repr(C)]
pub struct ZoneShared {
    magic: u64,
    /// Bytes of the whole shared memory zone.
    pub zone_size: u64,
    /// Bytes of the block this header starts.
    block_size: u64,
    mask: u32,
    pub entry_capacity: u32,
    hold_capacity: u32,
    /// Head and tail of the FIFO of reusable entries (never used or idle).
    reuse_head: u32,
    reuse_tail: u32,
    free_hold: u32,
    /// Entries with a count above 0 (the keys shown by the stats).
    pub live_entries: u32,
    live_holds: u32,
    /// Rejections over the limit since the zone was created.
    pub rejections: u64,
    /// Requests turned away because the zone was full.
    pub zone_full: u64,
    /// Counts given back from dead workers.
    pub reclaimed: u64,
    /// pid of the process that last registered in each worker slot (0: none).
    worker_pid: [i32; MAX_SLOTS],
    buckets_off: u64,
    entries_off: u64,
    holds_off: u64,
    /// Seeds of the keyed hash, drawn from the kernel's random source when
    /// the zone is created (kept across reloads with the zone).
    hash_seeds: [u64; 4],
}

/// Where an entry's label starts: after the key, and after the padding of a short key.
fn label_start(key_len: usize) -> usize {
    key_len.clamp(KEY_SMALL, KEY_INLINE)
}

/// A key as the table looks it up: kind, length, hash and bytes. A key
/// of at most `KEY_SMALL` bytes lives zero-padded in `words` (so it is
/// compared with two loads); a longer one is borrowed through `long`.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    pub kind: KeyTag,
    pub len: usize,
    pub hash: u64,
    pub words: [u64; 2],
    long: *const u8,
    _bytes: core::marker::PhantomData<&'a [u8]>,
}

impl<'a> Key<'a> {
    /// A key of `bytes` (borrowed when longer than `KEY_SMALL`), hashed
    /// with the zone's `hasher`.
    pub fn new(kind: KeyTag, bytes: &'a [u8], hasher: &KeyHasher) -> Key<'a> {
        let mut key = Key::empty(kind);
        key.set_bytes(bytes);
        key.hash_it(hasher);
        key
    }

    /// A zero-length key of `kind`, to fill in place.
    #[inline]
    pub fn empty(kind: KeyTag) -> Key<'a> {
        Key { kind, len: 0, hash: 0, words: [0; 2], long: ptr::null(), _bytes: core::marker::PhantomData }
    }

    /// Sets the key's bytes (copied when short, borrowed otherwise).
    #[inline]
    pub fn set_bytes(&mut self, bytes: &'a [u8]) {
        self.len = bytes.len();
        if bytes.len() <= KEY_SMALL {
            self.small_mut()[..bytes.len()].copy_from_slice(bytes);
        } else {
            self.long = bytes.as_ptr();
        }
    }

    /// The zero-padded bytes of a short key, to write it in place.
    #[inline]
    pub fn small_mut(&mut self) -> &mut [u8; KEY_SMALL] {
        // SAFETY: two u64 are 16 bytes, and u8 has no alignment.
        unsafe { &mut *(self.words.as_mut_ptr() as *mut [u8; KEY_SMALL]) }
    }

    /// Computes `hash` with the zone's `hasher` once the bytes are set.
    #[inline]
    pub fn hash_it(&mut self, hasher: &KeyHasher) {
        self.hash = if self.len <= KEY_SMALL {
            hasher.small_key(self.kind, self.len, self.words)
        } else {
            hasher.key(self.kind, self.bytes())
        };
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len <= KEY_SMALL {
            // SAFETY: the words are 16 bytes, of which len are the key.
            unsafe { core::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
        } else {
            // SAFETY: long points at len bytes borrowed for 'a.
            unsafe { core::slice::from_raw_parts(self.long, self.len) }
        }
    }
}

/// The two words of a zero-padded short key.
#[inline]
pub fn padded_words(padded: &[u8; KEY_SMALL]) -> [u64; 2] {
    let word = |at: usize| u64::from_ne_bytes(padded[at..at + 8].try_into().unwrap_or([0; 8]));
    [word(0), word(8)]
}

const ENTRY_COST: usize = size_of::<Entry>() + 2 * size_of::<Hold>() + 2 * size_of::<u32>();

/// The zone's keyed hash: aHash seeded with the zone's four random seeds.
/// Every process maps the zone and holds a hasher built from the same
/// seeds, so all hash alike; a client cannot tell which keys share a
/// bucket, so it cannot pile its keys into one chain that every lookup
/// then walks under the lock (a fixed public hash allowed exactly that).
#[derive(Clone)]
pub struct KeyHasher(ahash::RandomState);

impl KeyHasher {
    fn from_seeds(seeds: [u64; 4]) -> KeyHasher {
        KeyHasher(ahash::RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]))
    }

    /// Hash of a key of at most `KEY_SMALL` bytes from its zero-padded
    /// words (what `key` computes for it): one 128-bit block, so two
    /// multiplies. The kind and length only need to separate keys whose
    /// words are equal (the table compares both anyway).
    #[inline]
    pub fn small_key(&self, kind: KeyTag, len: usize, words: [u64; 2]) -> u64 {
        let mut hasher = self.0.build_hasher();
        hasher.write_u128(u128::from(words[0] ^ len as u64) | u128::from(words[1] ^ (kind as u64) << 56) << 64);
        hasher.finish()
    }

    /// Hash of the kind and the key.
    pub fn key(&self, kind: KeyTag, key: &[u8]) -> u64 {
        if key.len() <= KEY_SMALL {
            let mut padded = [0u8; KEY_SMALL];
            padded[..key.len()].copy_from_slice(key);
            return self.small_key(kind, key.len(), padded_words(&padded));
        }
        let mut hasher = self.0.build_hasher();
        hasher.write_u8(kind);
        hasher.write(key);
        hasher.finish()
    }
}

/// Lays out a fresh table in `block` of `block_size` bytes.
///
/// # Safety
/// `block` must be writable for `block_size` bytes and aligned to 8.
unsafe fn format(block: *mut u8, block_size: usize, zone_size: usize, hash_seeds: [u64; 4]) -> Option<*mut ZoneShared> {
    let header = size_of::<ZoneShared>();
    let avail = block_size.checked_sub(header + 64)?;
    let mut capacity = avail / ENTRY_COST;
    if capacity < 4 {
        return None;
    }
    let mut buckets = capacity.next_power_of_two();
    // next_power_of_two may overshoot the two u32 per entry budgeted for buckets
    while header + buckets * 4 + 8 + capacity * (size_of::<Entry>() + 2 * size_of::<Hold>()) + 8 > block_size {
        capacity -= 1;
        buckets = capacity.next_power_of_two();
    }
    let buckets_off = header;
    let entries_off = (buckets_off + buckets * 4).next_multiple_of(align_of::<Entry>());
    let holds_off = (entries_off + capacity * size_of::<Entry>()).next_multiple_of(align_of::<Hold>());
    let hold_capacity = capacity * 2;

    // SAFETY: the caller gives us block_size writable bytes; all offsets are inside.
    unsafe {
        ptr::write_bytes(block, 0, holds_off + hold_capacity * size_of::<Hold>());
        let sh = block as *mut ZoneShared;
        (*sh).magic = MAGIC;
        (*sh).zone_size = zone_size as u64;
        (*sh).block_size = block_size as u64;
        (*sh).mask = (buckets - 1) as u32;
        (*sh).entry_capacity = capacity as u32;
        (*sh).hold_capacity = hold_capacity as u32;
        (*sh).buckets_off = buckets_off as u64;
        (*sh).entries_off = entries_off as u64;
        (*sh).holds_off = holds_off as u64;
        (*sh).hash_seeds = hash_seeds;
        let bucket_ptr = block.add(buckets_off) as *mut u32;
        for i in 0..buckets {
            *bucket_ptr.add(i) = NIL;
        }
        let entries = block.add(entries_off) as *mut Entry;
        for i in 0..capacity {
            (*entries.add(i)).next = NIL;
            (*entries.add(i)).holds = NIL;
            (*entries.add(i)).reuse_next = if i + 1 < capacity { (i + 1) as u32 } else { NIL };
        }
        let holds = block.add(holds_off) as *mut Hold;
        for i in 0..hold_capacity {
            (*holds.add(i)).next = if i + 1 < hold_capacity { (i + 1) as u32 } else { NIL };
        }
        (*sh).reuse_head = 0;
        (*sh).reuse_tail = (capacity - 1) as u32;
        (*sh).free_hold = 0;
        Some(sh)
    }
}

/// Per-cycle handle on a zone: what `shm_zone->data` points at.
pub struct ZoneCtx {
    /// The directive that declared the zone (`vlimit_zone`), for messages.
    pub directive: &'static str,
    pub name: String,
    pub size: usize,
    /// Set by the zone init callback.
    pub shpool: *mut ngx_slab_pool_t,
    pub shared: *mut ZoneShared,
    /// The table's parts (shared memory is mapped at the same address in
    /// every process), set with `shared`.
    table: Table,
    /// The keyed hash of this zone, built from the seeds in its header.
    hasher: KeyHasher,
}

impl ZoneCtx {
    pub fn new(directive: &'static str, name: String, size: usize) -> ZoneCtx {
        ZoneCtx {
            directive,
            name,
            size,
            shpool: ptr::null_mut(),
            shared: ptr::null_mut(),
            table: Table {
                header: ptr::null_mut(),
                buckets: ptr::null_mut(),
                entries: ptr::null_mut(),
                holds: ptr::null_mut(),
            },
            hasher: KeyHasher::from_seeds([0; 4]),
        }
    }

    /// The hash keys of this zone are computed with (before its lock is taken).
    #[inline]
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    fn set_shared(&mut self, shared: *mut ZoneShared) {
        self.shared = shared;
        if !shared.is_null() {
            // SAFETY: a non-null header was laid out by `format` (checked by magic).
            self.table = unsafe { Table::from_shared(shared) };
            // SAFETY: as above; the seeds never change after `format`.
            self.hasher = KeyHasher::from_seeds(unsafe { (*shared).hash_seeds });
        }
    }

    /// Takes the zone's lock; `None` before the zone is initialised.
    #[inline]
    pub fn lock(&self) -> Option<Locked<'_>> {
        if !self.lock_raw() {
            return None;
        }
        // SAFETY: we hold the lock.
        let table = unsafe { self.table() };
        Some(Locked { shpool: self.shpool, table, _zone: core::marker::PhantomData })
    }

    /// Takes the zone's lock without a guard (for a caller that holds
    /// several zones at once); false before the zone is initialised.
    #[inline]
    pub fn lock_raw(&self) -> bool {
        if self.shpool.is_null() || self.shared.is_null() {
            return false;
        }
        // SAFETY: shpool is the slab pool at the start of the mapped zone; its
        // mutex is shared by every process of this nginx.
        unsafe { shmtx_lock(&mut (*self.shpool).mutex) };
        true
    }

    /// A handle that tells whether this process holds the zone's lock, for
    /// code that must never run under it (formatting statistics).
    pub fn lock_probe(&self) -> LockProbe {
        LockProbe { shpool: if self.shared.is_null() { ptr::null_mut() } else { self.shpool } }
    }

    /// Releases a lock taken with `lock_raw`.
    ///
    /// # Safety
    /// The caller holds the lock (`lock_raw` returned true).
    #[inline]
    pub unsafe fn unlock_raw(&self) {
        // SAFETY: per the contract, we locked this mutex.
        unsafe { shmtx_unlock(&mut (*self.shpool).mutex) };
    }

    /// The table, for a caller that took the lock with `lock_raw`.
    ///
    /// # Safety
    /// The caller holds the lock while it uses the table.
    #[inline]
    pub unsafe fn table(&self) -> Table {
        Table { ..self.table }
    }
}

/// See [`ZoneCtx::lock_probe`]. Valid while the zone is mapped (the cycle).
#[derive(Clone, Copy)]
pub struct LockProbe {
    shpool: *mut ngx_slab_pool_t,
}

impl LockProbe {
    /// Whether this process holds the lock now (its lock word holds our
    /// pid). Reads one shared word; takes nothing.
    pub fn held_by_this_process(self) -> bool {
        if self.shpool.is_null() {
            return false;
        }
        // SAFETY: shpool is the live slab pool of the mapped zone; its mutex's
        // lock points at the shared lock word; ngx_pid is set at start.
        unsafe {
            let lock = &*((*self.shpool).mutex.lock as *const AtomicU64);
            lock.load(Ordering::Acquire) == ngx_pid as u64
        }
    }
}

/// `ngx_shmtx_lock` with its uncontended case inline: the same
/// compare-and-set of the lock word to our pid (so the master's
/// force-unlock of a dead worker still applies); nginx's function
/// otherwise (spinning, then the semaphore).
///
/// # Safety
/// `mtx` is a live shared mutex created by `ngx_shmtx_create`.
#[inline]
unsafe fn shmtx_lock(mtx: &mut ngx_shmtx_t) {
    // SAFETY: mtx->lock points at the shared lock word; ngx_pid is set at start.
    unsafe {
        let lock = &*(mtx.lock as *const AtomicU64);
        let pid = ngx_pid as u64;
        if lock.load(Ordering::Relaxed) == 0
            && lock.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            return;
        }
        ngx_shmtx_lock(mtx);
    }
}

/// `ngx_shmtx_unlock` inline: release the lock word if it is ours, then
/// wake one process waiting on the semaphore, as `ngx_shmtx_wakeup` does.
///
/// # Safety
/// `mtx` is a live shared mutex this process locked.
#[inline]
unsafe fn shmtx_unlock(mtx: &mut ngx_shmtx_t) {
    // SAFETY: lock and wait point at the shared words of the mutex.
    unsafe {
        let lock = &*(mtx.lock as *const AtomicU64);
        if lock.compare_exchange(ngx_pid as u64, 0, Ordering::AcqRel, Ordering::Relaxed).is_err() || mtx.semaphore == 0
        {
            return;
        }
        let wait = &*(mtx.wait as *const AtomicU64);
        loop {
            let waiting = wait.load(Ordering::Relaxed);
            if waiting as i64 <= 0 {
                return;
            }
            if wait.compare_exchange(waiting, waiting - 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                break;
            }
        }
        sem_post(&mut mtx.sem);
    }
}

/// The zone's table while its lock is held; unlocks on drop.
pub struct Locked<'a> {
    shpool: *mut ngx_slab_pool_t,
    pub table: Table,
    _zone: core::marker::PhantomData<&'a ZoneCtx>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: we locked this mutex in `ZoneCtx::lock`.
        unsafe { shmtx_unlock(&mut (*self.shpool).mutex) };
    }
}

/// Typed view of the zone table. Only used while the lock is held.
pub struct Table {
    header: *mut ZoneShared,
    buckets: *mut u32,
    entries: *mut Entry,
    holds: *mut Hold,
}

impl Table {
    /// # Safety
    /// `sh` must be a header laid out by `format`, and the zone lock held.
    unsafe fn from_shared(sh: *mut ZoneShared) -> Table {
        let base = sh as *mut u8;
        // SAFETY: offsets were written by `format` and lie inside the block.
        unsafe {
            Table {
                header: sh,
                buckets: base.add((*sh).buckets_off as usize) as *mut u32,
                entries: base.add((*sh).entries_off as usize) as *mut Entry,
                holds: base.add((*sh).holds_off as usize) as *mut Hold,
            }
        }
    }

    pub fn header(&mut self) -> &mut ZoneShared {
        // SAFETY: the lock is held for the life of self.
        unsafe { &mut *self.header }
    }

    fn bucket(&mut self, hash: u64) -> &mut u32 {
        // SAFETY: the index is masked to the bucket count.
        unsafe {
            let i = (hash as u32 & (*self.header).mask) as usize;
            &mut *self.buckets.add(i)
        }
    }

    pub fn entry(&mut self, idx: u32) -> &mut Entry {
        // SAFETY: callers pass indexes below entry_capacity (from chains or requests).
        unsafe {
            debug_assert!(idx < (*self.header).entry_capacity);
            &mut *self.entries.add(idx as usize)
        }
    }

    fn hold(&mut self, idx: u32) -> &mut Hold {
        // SAFETY: hold indexes come from chains laid out by `format`.
        unsafe { &mut *self.holds.add(idx as usize) }
    }

    /// The entry counting `key`, if any.
    #[inline]
    pub fn find(&mut self, key: &Key) -> Option<u32> {
        let mut idx = *self.bucket(key.hash);
        while idx != NIL {
            let entry = self.entry(idx);
            if entry.matches(key) {
                return Some(idx);
            }
            idx = entry.next;
        }
        None
    }

    /// Adds an entry with count 0 for a key `find` did not find, taking
    /// over the oldest reusable entry; `None` when every entry is live.
    pub fn insert(&mut self, key_ref: &Key, label: &[u8]) -> Option<u32> {
        let (kind, key, hash) = (key_ref.kind, key_ref.bytes(), key_ref.hash);
        if key.len() > u16::MAX as usize {
            return None;
        }
        let idx = self.take_reusable()?;
        let head = *self.bucket(hash);
        let entry = self.entry(idx);
        entry.next = head;
        entry.count = 0;
        entry.limit = 0;
        entry.holds = NIL;
        entry.first_count = 0;
        entry.rejections = 0;
        entry.hash = hash;
        entry.key_len = key.len() as u16;
        entry.kind = kind;
        let stored = key.len().min(KEY_INLINE);
        // a short key is zero-padded, so `matches` compares two words
        entry.bytes[..KEY_SMALL].fill(0);
        entry.bytes[..stored].copy_from_slice(&key[..stored]);
        // keep the tail of the label (the file name end of a path)
        let start = label_start(key.len());
        let room = KEY_INLINE - start;
        let label = &label[label.len().saturating_sub(room.min(u8::MAX as usize))..];
        entry.bytes[start..start + label.len()].copy_from_slice(label);
        entry.label_len = label.len() as u8;
        *self.bucket(hash) = idx;
        // idle until acquired: reusable again if the caller cannot count on it
        self.queue_reusable(idx);
        Some(idx)
    }

    /// Pops the oldest reusable entry, dropping from the FIFO the entries
    /// revived since they were queued, and unlinks an idle one from its
    /// bucket chain.
    fn take_reusable(&mut self) -> Option<u32> {
        loop {
            let idx = self.header().reuse_head;
            if idx == NIL {
                return None;
            }
            let entry = self.entry(idx);
            let next = entry.reuse_next;
            entry.reuse_next = NOT_QUEUED;
            let (count, kind) = (entry.count, entry.kind);
            let header = self.header();
            header.reuse_head = next;
            if next == NIL {
                header.reuse_tail = NIL;
            }
            if count > 0 {
                // live again: queued anew when its count returns to 0
                continue;
            }
            if kind != 0 {
                self.unlink_from_bucket(idx);
            }
            return Some(idx);
        }
    }

    /// Appends an idle entry to the reusable FIFO (once).
    fn queue_reusable(&mut self, idx: u32) {
        if self.entry(idx).reuse_next != NOT_QUEUED {
            return;
        }
        self.entry(idx).reuse_next = NIL;
        let tail = self.header().reuse_tail;
        if tail == NIL {
            self.header().reuse_head = idx;
        } else {
            self.entry(tail).reuse_next = idx;
        }
        self.header().reuse_tail = idx;
    }

    /// Removes an idle entry from its bucket chain before another key takes it.
    fn unlink_from_bucket(&mut self, idx: u32) {
        let (hash, next) = {
            let entry = self.entry(idx);
            (entry.hash, entry.next)
        };
        let mut cur = *self.bucket(hash);
        if cur == idx {
            *self.bucket(hash) = next;
        } else {
            while cur != NIL {
                let cur_next = self.entry(cur).next;
                if cur_next == idx {
                    self.entry(cur).next = next;
                    break;
                }
                cur = cur_next;
            }
        }
        // a half-applied update (worker killed in the lock) may leave holds
        let mut h = self.entry(idx).holds;
        while h != NIL {
            let next_hold = self.hold(h).next;
            self.unlink_hold(idx, NIL, h, next_hold);
            h = next_hold;
        }
        let entry = self.entry(idx);
        entry.kind = 0;
        entry.next = NIL;
        entry.first_count = 0;
    }

    /// Counts one more request of worker `slot` on entry `idx`; false when
    /// the ledger is full (nothing changed then).
    #[inline]
    pub fn acquire(&mut self, idx: u32, slot: u32) -> bool {
        let entry = self.entry(idx);
        if entry.first_count == 0 || entry.first_slot as u32 == slot {
            entry.first_slot = slot as u16;
            entry.first_count += 1;
        } else if !self.acquire_chained(idx, slot) {
            return false;
        }
        let entry = self.entry(idx);
        entry.count += 1;
        if entry.count == 1 {
            self.header().live_entries += 1;
        }
        true
    }

    /// A count of a slot other than the entry's inline one, in the chain.
    fn acquire_chained(&mut self, idx: u32, slot: u32) -> bool {
        let mut h = self.entry(idx).holds;
        while h != NIL {
            let hold = self.hold(h);
            if hold.slot == slot {
                hold.count += 1;
                return true;
            }
            h = hold.next;
        }
        let free = self.header().free_hold;
        if free == NIL {
            return false;
        }
        let entry_holds = self.entry(idx).holds;
        let hold = self.hold(free);
        let free_next = hold.next;
        *hold = Hold { next: entry_holds, count: 1, slot };
        let header = self.header();
        header.free_hold = free_next;
        header.live_holds += 1;
        self.entry(idx).holds = free;
        true
    }

    /// Gives back one count of worker `slot` on entry `idx`; the entry
    /// becomes idle (reusable) when its count reaches 0.
    #[inline]
    pub fn release(&mut self, idx: u32, slot: u32) {
        let entry = self.entry(idx);
        if entry.first_count > 0 && entry.first_slot as u32 == slot {
            entry.first_count -= 1;
        } else if !self.release_chained(idx, slot) {
            return;
        }
        let entry = self.entry(idx);
        if entry.count > 0 {
            entry.count -= 1;
            if entry.count == 0 {
                self.became_idle(idx);
            }
        }
    }

    /// Takes one count of `slot` from the chain; false if it holds none.
    fn release_chained(&mut self, idx: u32, slot: u32) -> bool {
        let mut prev = NIL;
        let mut h = self.entry(idx).holds;
        while h != NIL {
            let hold = self.hold(h);
            let next = hold.next;
            if hold.slot == slot {
                hold.count -= 1;
                if hold.count == 0 {
                    self.unlink_hold(idx, prev, h, next);
                }
                return true;
            }
            prev = h;
            h = next;
        }
        false
    }

    fn became_idle(&mut self, idx: u32) {
        self.header().live_entries -= 1;
        self.queue_reusable(idx);
    }

    fn unlink_hold(&mut self, idx: u32, prev: u32, h: u32, next: u32) {
        if prev == NIL {
            self.entry(idx).holds = next;
        } else {
            self.hold(prev).next = next;
        }
        let free = self.header().free_hold;
        self.hold(h).next = free;
        let header = self.header();
        header.free_hold = h;
        header.live_holds -= 1;
    }

    /// Gives back every count held by worker `slot`; returns how many.
    pub fn reclaim_slot(&mut self, slot: u32) -> u64 {
        let mut total = 0u64;
        let capacity = self.header().entry_capacity;
        for idx in 0..capacity {
            if self.entry(idx).count == 0 {
                continue;
            }
            let entry = self.entry(idx);
            if entry.first_count > 0 && entry.first_slot as u32 == slot {
                let count = entry.first_count;
                entry.first_count = 0;
                entry.count = entry.count.saturating_sub(count);
                total += count as u64;
                if entry.count == 0 {
                    self.became_idle(idx);
                    continue;
                }
            }
            let mut prev = NIL;
            let mut h = self.entry(idx).holds;
            while h != NIL {
                let (hold_slot, count, next) = {
                    let hold = self.hold(h);
                    (hold.slot, hold.count, hold.next)
                };
                if hold_slot == slot {
                    self.unlink_hold(idx, prev, h, next);
                    let entry = self.entry(idx);
                    entry.count = entry.count.saturating_sub(count);
                    total += count as u64;
                    if entry.count == 0 {
                        self.became_idle(idx);
                    }
                } else {
                    prev = h;
                }
                h = next;
            }
        }
        self.header().reclaimed += total;
        total
    }

    /// The pid registered in a worker slot.
    pub fn slot_pid(&mut self, slot: usize) -> i32 {
        self.header().worker_pid[slot]
    }

    pub fn set_slot_pid(&mut self, slot: usize, pid: i32) {
        self.header().worker_pid[slot] = pid;
    }

    /// Calls `f` for every live entry (count above 0).
    pub fn for_each(&mut self, mut f: impl FnMut(&Entry)) {
        let capacity = self.header().entry_capacity;
        for idx in 0..capacity {
            let entry = self.entry(idx);
            if entry.kind != 0 && entry.count > 0 {
                f(entry);
            }
        }
    }

    /// Entries in the longest bucket chain, idle ones included: the most a
    /// lookup walks under the lock (what a flood of colliding keys would grow).
    pub fn longest_chain(&mut self) -> u32 {
        let buckets = self.header().mask as usize + 1;
        let mut longest = 0;
        for b in 0..buckets {
            // SAFETY: b is below the bucket count.
            let mut idx = unsafe { *self.buckets.add(b) };
            let mut length = 0;
            while idx != NIL && length <= self.header().entry_capacity {
                length += 1;
                idx = self.entry(idx).next;
            }
            longest = longest.max(length);
        }
        longest
    }

    /// Bytes of the zone still available for new keys (idle entries included).
    pub fn free_bytes(&mut self) -> u64 {
        let header = self.header();
        (header.entry_capacity - header.live_entries) as u64 * ENTRY_COST as u64
    }
}

/// `shm_zone->init`: reuses the previous cycle's table when nginx kept the
/// memory (same name and size), else lays out a new one.
///
/// # Safety
/// Called by nginx with one of our zones and the previous cycle's data.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes our zone; `data` is the previous cycle's ZoneCtx or NULL.
    let (zone, old) = unsafe { (&mut *shm_zone, data as *const ZoneCtx) };
    // SAFETY: shm_zone->data is the ZoneCtx the directive stored.
    let ctx = unsafe { &mut *(zone.data as *mut ZoneCtx) };
    match init_ctx(zone, ctx, old) {
        Ok(()) => NGX_OK as ngx_int_t,
        Err(message) => {
            crate::ngx_util::log(zone.shm.log, NGX_LOG_EMERG, &message);
            NGX_ERROR as ngx_int_t
        }
    }
}

fn init_ctx(zone: &mut ngx_shm_zone_t, ctx: &mut ZoneCtx, old: *const ZoneCtx) -> Result<(), String> {
    let shpool = zone.shm.addr as *mut ngx_slab_pool_t;
    ctx.shpool = shpool;
    if !old.is_null() {
        // SAFETY: the old cycle's ctx lives until the new cycle is ready.
        ctx.set_shared(unsafe { (*old).shared });
        return Ok(());
    }
    // SAFETY: the slab pool was initialised by nginx at the zone's start.
    let pool = unsafe { &mut *shpool };
    if zone.shm.exists != 0 {
        ctx.shared = pool.data as *mut ZoneShared;
        check_magic(ctx)?;
        ctx.set_shared(ctx.shared);
        return Ok(());
    }
    let mut seed_bytes = [0u8; 32];
    getrandom::getrandom(&mut seed_bytes)
        .map_err(|err| format!("{} \"{}\": cannot draw its hash seeds: {err}", ctx.directive, ctx.name))?;
    let mut hash_seeds = [0u64; 4];
    for (seed, bytes) in hash_seeds.iter_mut().zip(seed_bytes.chunks_exact(8)) {
        *seed = u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
    }
    let label = format!(" in {} \"{}\"\0", ctx.directive, ctx.name);
    // SAFETY: ngx_slab_alloc locks the pool itself; sizes are in bytes.
    unsafe {
        let log_ctx = ngx_slab_alloc(shpool, label.len()) as *mut u8;
        if !log_ctx.is_null() {
            ptr::copy_nonoverlapping(label.as_ptr(), log_ctx, label.len());
            pool.log_ctx = log_ctx;
        }
        // take every free page: the table never grows afterwards
        let pagesize = ngx_pagesize;
        let mut pages = pool.pfree;
        let mut block = ptr::null_mut::<u8>();
        while pages > 0 {
            block = ngx_slab_alloc(shpool, pages * pagesize) as *mut u8;
            if !block.is_null() {
                break;
            }
            pages -= 1;
        }
        if block.is_null() {
            return Err(format!("{} \"{}\" is too small", ctx.directive, ctx.name));
        }
        let shared = format(block, pages * pagesize, zone.shm.size, hash_seeds)
            .ok_or_else(|| format!("{} \"{}\" is too small", ctx.directive, ctx.name))?;
        pool.data = shared as *mut c_void;
        ctx.set_shared(shared);
    }
    Ok(())
}

fn check_magic(ctx: &ZoneCtx) -> Result<(), String> {
    // SAFETY: an existing zone's data points at a header of some layout.
    if ctx.shared.is_null() || unsafe { (*ctx.shared).magic } != MAGIC {
        return Err(format!("{} \"{}\" has an unknown layout", ctx.directive, ctx.name));
    }
    Ok(())
}
