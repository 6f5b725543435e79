//! The shared zone of per-host usage (`ngx_mruby_resources`, 1 MB: about
//! 3,000 hosts): a header with the hash seeds and the auto-confine state,
//! then the host table of `resource_policy::hosts`. Every worker records
//! into it and reads from it under the slab pool's mutex (which the master
//! force-unlocks when a worker dies holding it). Kept across reloads.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ptr;

use ngx::core::Pool;
use ngx::ffi::*;
use resource_policy::confine::ConfineState;
use resource_policy::hosts::{HostRecord, HostTable};

use crate::ngx_util::log;

/// Bytes of the zone.
pub const ZONE_SIZE: usize = 1 << 20;
const ZONE_NAME: &str = "ngx_mruby_resources";
/// Marks a zone laid out by this version of the code.
const MAGIC: u64 = 0x7265_736f_7572_0001;

/// The start of the zone's block.
#[repr(C)]
pub struct ZoneHeader {
    magic: u64,
    seeds: [u64; 4],
    pub state: ConfineState,
    /// The second the last auto-confine step ran (one step a second, whichever worker comes first).
    pub last_step: u64,
    capacity: u64,
}

/// Per-cycle handle on the zone: what `shm_zone->data` points at.
pub struct UsageZone {
    shpool: *mut ngx_slab_pool_t,
    header: *mut ZoneHeader,
}

/// The zone while its lock is held; unlocks on drop.
pub struct Locked<'a> {
    shpool: *mut ngx_slab_pool_t,
    pub header: &'a mut ZoneHeader,
    pub table: HostTable<'a>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: we locked this mutex in `UsageZone::lock`.
        unsafe { ngx_shmtx_unlock(&mut (*self.shpool).mutex) };
    }
}

impl UsageZone {
    /// Takes the zone's lock; `None` before the zone is initialised (in the
    /// master during configuration, or without resource directives).
    pub fn lock(&self) -> Option<Locked<'_>> {
        if self.shpool.is_null() || self.header.is_null() {
            return None;
        }
        // SAFETY: shpool is the slab pool at the start of the mapped zone, and
        // header the block `format` laid out in it (mapped at the same address
        // in every process); we hold the lock while the references live.
        unsafe {
            ngx_shmtx_lock(&mut (*self.shpool).mutex);
            let header = &mut *self.header;
            let records = core::slice::from_raw_parts_mut(
                (self.header as *mut u8).add(records_offset()) as *mut HostRecord,
                header.capacity as usize,
            );
            let table = HostTable::new(records, header.seeds);
            Some(Locked { shpool: self.shpool, header, table })
        }
    }

    pub fn capacity(&self) -> usize {
        // SAFETY: the capacity never changes after `format`.
        unsafe { self.header.as_ref().map_or(0, |h| h.capacity as usize) }
    }
}

fn records_offset() -> usize {
    size_of::<ZoneHeader>().next_multiple_of(align_of::<HostRecord>())
}

/// Declares the zone (at the end of `http{}`, when some resource directive is used).
pub fn declare(cf: &mut ngx_conf_t) -> Result<*mut ngx_shm_zone_t, String> {
    let mut name = ngx_str_t { len: ZONE_NAME.len(), data: ZONE_NAME.as_ptr() as *mut u8 };
    // SAFETY: the tag is our module table; nginx checks name/size/tag conflicts.
    let shm_zone = unsafe {
        ngx_shared_memory_add(
            cf,
            &mut name,
            ZONE_SIZE,
            ptr::addr_of_mut!(super::ngx_http_resources_module) as *mut c_void,
        )
    };
    if shm_zone.is_null() {
        return Err(format!("resources: cannot declare the shared zone \"{ZONE_NAME}\""));
    }
    // SAFETY: ngx_shared_memory_add returned a live zone of this cycle.
    let zone = unsafe { &mut *shm_zone };
    if zone.data.is_null() {
        // SAFETY: cf->pool is the live configuration pool.
        let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
        let ctx = pool.allocate(UsageZone { shpool: ptr::null_mut(), header: ptr::null_mut() });
        if ctx.is_null() {
            return Err(String::from("resources: out of memory"));
        }
        zone.data = ctx as *mut c_void;
        zone.init = Some(init_zone);
    }
    Ok(shm_zone)
}

/// The handle of a declared zone.
pub(super) fn zone_of<'a>(shm_zone: *mut ngx_shm_zone_t) -> Option<&'a UsageZone> {
    if shm_zone.is_null() {
        return None;
    }
    // SAFETY: our zone's data is a UsageZone allocated in the cycle pool (or NULL).
    unsafe { ((*shm_zone).data as *const UsageZone).as_ref() }
}

/// The zone's init callback: reuses the previous cycle's block on reload,
/// lays a new one out otherwise.
unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes our zone; `data` is the previous cycle's UsageZone or NULL.
    let (zone, old) = unsafe { (&mut *shm_zone, data as *const UsageZone) };
    // SAFETY: shm_zone->data is the UsageZone `declare` stored.
    let ctx = unsafe { &mut *(zone.data as *mut UsageZone) };
    ctx.shpool = zone.shm.addr as *mut ngx_slab_pool_t;
    // SAFETY: the old cycle's ctx lives until the new cycle is ready.
    if let Some(old) = unsafe { old.as_ref() } {
        ctx.header = old.header;
        return NGX_OK as ngx_int_t;
    }
    match format(ctx) {
        Ok(()) => NGX_OK as ngx_int_t,
        Err(message) => {
            log(zone.shm.log, NGX_LOG_EMERG, &message);
            NGX_ERROR as ngx_int_t
        }
    }
}

fn format(ctx: &mut UsageZone) -> Result<(), String> {
    let mut seed_bytes = [0u8; 32];
    getrandom::getrandom(&mut seed_bytes).map_err(|e| format!("resources: cannot draw the zone's hash seeds: {e}"))?;
    let mut seeds = [0u64; 4];
    for (seed, bytes) in seeds.iter_mut().zip(seed_bytes.chunks_exact(8)) {
        *seed = u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
    }
    // the slab pool's own bookkeeping takes part of the zone
    let block = ZONE_SIZE / 2 + ZONE_SIZE / 4;
    let capacity = (block - records_offset()) / size_of::<HostRecord>();
    // SAFETY: ngx_slab_alloc locks the pool itself; the block is written
    // before any process can see it (the header pointer is set last).
    unsafe {
        let header = ngx_slab_alloc(ctx.shpool, block) as *mut ZoneHeader;
        if header.is_null() {
            return Err(format!("resources: the shared zone \"{ZONE_NAME}\" has no room for {block} bytes"));
        }
        ptr::write_bytes(header as *mut u8, 0, block);
        (*header).magic = MAGIC;
        (*header).seeds = seeds;
        (*header).capacity = capacity as u64;
        ctx.header = header;
    }
    Ok(())
}
