//! `mruby_upstream_keepalive N`: nginx's own `keepalive N` (the
//! ngx_http_upstream_keepalive_module compiled into nginx), plus resizing its
//! idle-connection pool at run time for `Nginx::Upstream#keepalive_cache=`.
//!
//! ngx_mruby shipped a copy of nginx's keepalive module to reach
//! `max_cached`. Here the directive calls nginx's `keepalive` handler, and
//! the two structs below mirror the keepalive module's private
//! `ngx_http_upstream_keepalive_srv_conf_t` and `_cache_t` (nginx 1.28,
//! unchanged since 1.15.3) so the pool can be read and resized.

use core::cell::RefCell;
use core::ffi::{c_char, c_void, CStr};
use core::ptr;

use ngx::ffi::*;

use crate::ngx_util::str_lossy;
use crate::ngx_util::{conf_args as args, conf_result};

extern "C" {
    /// nginx's keepalive module (static, exported by the nginx binary).
    static mut ngx_http_upstream_keepalive_module: ngx_module_t;
}

/// `ngx_http_upstream_keepalive_srv_conf_t` (ngx_http_upstream_keepalive_module.c).
#[repr(C)]
struct KeepaliveSrvConf {
    max_cached: ngx_uint_t,
    requests: ngx_uint_t,
    time: ngx_msec_t,
    timeout: ngx_msec_t,
    cache: ngx_queue_t,
    free: ngx_queue_t,
    original_init_upstream: ngx_http_upstream_init_pt,
    original_init_peer: ngx_http_upstream_init_peer_pt,
}

/// `ngx_http_upstream_keepalive_cache_t`: one slot for an idle connection.
#[repr(C)]
struct KeepaliveCacheItem {
    conf: *mut KeepaliveSrvConf,
    queue: ngx_queue_t,
    connection: *mut ngx_connection_t,
    socklen: socklen_t,
    sockaddr: ngx_sockaddr_t,
}

thread_local! {
    /// Slots taken out of a pool by shrinking, reused when a pool grows
    /// (they live in the cycle pool, which cannot free single blocks).
    static SPARE_ITEMS: RefCell<Vec<*mut KeepaliveCacheItem>> = const { RefCell::new(Vec::new()) };
}

fn keepalive_module() -> &'static ngx_module_t {
    // SAFETY: a static module table of the nginx binary; only its indices are read.
    unsafe { &*ptr::addr_of!(ngx_http_upstream_keepalive_module) }
}

/// `mruby_upstream_keepalive N`: validates N, then runs nginx's `keepalive N`.
fn upstream_keepalive(cf: &mut ngx_conf_t, cmd: &ngx_command_t) -> Result<(), String> {
    let value = &args(cf)[0];
    let valid = str_lossy(value).parse::<u32>().is_ok_and(|n| n > 0);
    if !valid {
        return Err(format!("invalid value \"{}\" in \"{}\" directive", str_lossy(value), str_lossy(&cmd.name)));
    }
    let module = keepalive_module();
    // SAFETY: the keepalive module's command table ends with a null command;
    // cf->ctx is this upstream block's context, whose srv_conf array has a
    // slot for every HTTP module.
    unsafe {
        let mut keepalive_cmd = module.commands;
        while !keepalive_cmd.is_null() && (*keepalive_cmd).name.len != 0 {
            if str_lossy(&(*keepalive_cmd).name) == "keepalive" {
                break;
            }
            keepalive_cmd = keepalive_cmd.add(1);
        }
        let set = if keepalive_cmd.is_null() { None } else { (*keepalive_cmd).set };
        let Some(set) = set else {
            return Err(String::from("nginx's keepalive module has no \"keepalive\" directive"));
        };
        let ctx = cf.ctx as *mut ngx_http_conf_ctx_t;
        let kcf = *(*ctx).srv_conf.add(module.ctx_index);
        // the handler reads cf->args[1], which is our N
        let rv = set(cf, keepalive_cmd, kcf);
        if !rv.is_null() && !ptr::eq(rv, ngx::core::NGX_CONF_ERROR.cast()) {
            return Err(format!(
                "\"{}\" directive {} (keepalive is already set for this upstream)",
                str_lossy(&cmd.name),
                CStr::from_ptr(rv).to_string_lossy()
            ));
        }
        if !rv.is_null() {
            return Err(format!("\"{}\" failed", str_lossy(&cmd.name)));
        }
    }
    Ok(())
}

pub(crate) extern "C" fn set_upstream_keepalive(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the live cf and this command.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, upstream_keepalive(cf_ref, cmd))
}

/// The keepalive module's conf of an upstream, if it turned keepalive on
/// (`keepalive` or `mruby_upstream_keepalive`) and its pool is built.
fn keepalive_conf(uscf: &ngx_http_upstream_srv_conf_t) -> Option<&'static mut KeepaliveSrvConf> {
    if uscf.srv_conf.is_null() {
        return None;
    }
    // SAFETY: srv_conf has a slot per HTTP module; the keepalive module's
    // slot holds its KeepaliveSrvConf, alive as long as the cycle.
    let kcf = unsafe { &mut *(*uscf.srv_conf.add(keepalive_module().ctx_index) as *mut KeepaliveSrvConf) };
    (kcf.max_cached > 0 && !kcf.free.next.is_null() && !kcf.cache.next.is_null()).then_some(kcf)
}

/// `keepalive_cache`: the pool size (0 when keepalive is off).
pub fn max_cached(uscf: &ngx_http_upstream_srv_conf_t) -> u64 {
    keepalive_conf(uscf).map_or(0, |kcf| kcf.max_cached as u64)
}

/// `keepalive_cache = n`: grows the worker's pool with free slots, or
/// shrinks it by dropping free slots first, then the oldest idle connections.
pub fn set_max_cached(uscf: &ngx_http_upstream_srv_conf_t, n: usize) -> Result<(), String> {
    let kcf = keepalive_conf(uscf).ok_or_else(|| {
        format!("keepalive is not enabled for upstream \"{}\" (use mruby_upstream_keepalive)", str_lossy(&uscf.host))
    })?;
    let current = kcf.max_cached;
    if n > current {
        for _ in current..n {
            let item = SPARE_ITEMS.with(|spare| spare.borrow_mut().pop()).map_or_else(new_item, Ok)?;
            // SAFETY: item is a zeroed slot owned by this pool from now on.
            unsafe {
                (*item).conf = kcf;
                (*item).connection = ptr::null_mut();
                queue_insert_head(&mut kcf.free, &mut (*item).queue);
            }
        }
    } else {
        for _ in n..current {
            // SAFETY: both queues hold KeepaliveCacheItem slots of this conf.
            unsafe {
                let q = if !queue_empty(&kcf.free) {
                    kcf.free.next
                } else if !queue_empty(&kcf.cache) {
                    // the tail of the cache is the connection idle the longest
                    let q = kcf.cache.prev;
                    let item = item_of(q);
                    close_idle_connection((*item).connection);
                    (*item).connection = ptr::null_mut();
                    q
                } else {
                    break;
                };
                queue_remove(q);
                SPARE_ITEMS.with(|spare| spare.borrow_mut().push(item_of(q)));
            }
        }
    }
    kcf.max_cached = n;
    Ok(())
}

fn new_item() -> Result<*mut KeepaliveCacheItem, String> {
    // SAFETY: ngx_cycle is the running cycle; its pool lives until the worker exits.
    let item = unsafe { ngx_pcalloc((*ngx_cycle).pool, core::mem::size_of::<KeepaliveCacheItem>()) };
    if item.is_null() {
        return Err(String::from("out of memory"));
    }
    Ok(item.cast())
}

/// The slot that holds queue link `q`.
///
/// # Safety
/// `q` must be the `queue` field of a live `KeepaliveCacheItem`.
unsafe fn item_of(q: *mut ngx_queue_t) -> *mut KeepaliveCacheItem {
    // SAFETY: caller's promise; ngx_queue_data().
    unsafe { q.byte_sub(core::mem::offset_of!(KeepaliveCacheItem, queue)).cast() }
}

fn queue_empty(h: &ngx_queue_t) -> bool {
    ptr::eq(h, h.prev)
}

/// # Safety
/// `h` is an initialised queue head, `x` an unlinked node.
unsafe fn queue_insert_head(h: *mut ngx_queue_t, x: *mut ngx_queue_t) {
    // SAFETY: caller's promise; ngx_queue_insert_head().
    unsafe {
        (*x).next = (*h).next;
        (*(*x).next).prev = x;
        (*x).prev = h;
        (*h).next = x;
    }
}

/// # Safety
/// `x` is linked in a queue.
unsafe fn queue_remove(x: *mut ngx_queue_t) {
    // SAFETY: caller's promise; ngx_queue_remove().
    unsafe {
        (*(*x).next).prev = (*x).prev;
        (*(*x).prev).next = (*x).next;
        (*x).prev = ptr::null_mut();
        (*x).next = ptr::null_mut();
    }
}

/// Closes an idle cached upstream connection, as the keepalive module's
/// `ngx_http_upstream_keepalive_close` does.
extern "C" fn close_idle_connection(c: *mut ngx_connection_t) {
    if c.is_null() {
        return;
    }
    // SAFETY: c is an idle upstream connection owned by the keepalive pool;
    // it is closed exactly once (here, or from the SSL shutdown handler).
    unsafe {
        let ssl = (*c).ssl;
        if !ssl.is_null() {
            (*ssl).set_no_wait_shutdown(1);
            (*ssl).set_no_send_shutdown(1);
            if ngx_ssl_shutdown(c) == NGX_AGAIN as ngx_int_t {
                (*ssl).handler = Some(close_idle_connection);
                return;
            }
        }
        ngx_destroy_pool((*c).pool);
        ngx_close_connection(c);
    }
}
