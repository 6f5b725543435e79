//! `Nginx::Upstream`: the single server of an `upstream{}` block, and the
//! keepalive pool size of `mruby_upstream_keepalive`.
//!
//! `server=` changes the worker's peer permanently (every later request of
//! this worker, not only the current one), as in ngx_mruby: configs use it
//! to repoint a backend. Other workers keep their own peer.

use std::cell::RefCell;
use std::collections::HashMap;

use mruby_sys::*;
use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::api::{arg_bytes, arg_int, arity, ARGS_ANY};
use crate::host;
use crate::ngx_util::str_bytes;
use crate::ruby_fn;
use crate::upstream::keepalive;
use crate::vm::{Mrb, RubyError, RubyResult};

const NAME_IVAR: &str = "@upstream_name";

/// A peer address given to `server=`; leaked on purpose, because requests
/// in flight keep pointers to a peer's sockaddr and name.
struct PeerAddr {
    sockaddr: ngx_sockaddr_t,
    socklen: socklen_t,
    name: Box<[u8]>,
}

thread_local! {
    /// One PeerAddr per distinct `server=` argument, so switching back and
    /// forth does not grow memory.
    static PEER_ADDRS: RefCell<HashMap<Vec<u8>, &'static PeerAddr>> = RefCell::new(HashMap::new());
}

/// The explicit `upstream name {}` block of the running configuration.
fn find_upstream(name: &[u8]) -> Result<&'static mut ngx_http_upstream_srv_conf_t, RubyError> {
    let not_found = || RubyError::runtime(format!("{} upstream not found", String::from_utf8_lossy(name)));
    // SAFETY: the host's cycle is live while its script runs.
    let cycle = unsafe { &*host::cycle() };
    let umcf = NgxHttpUpstreamModule::main_conf(cycle).ok_or_else(not_found)?;
    // SAFETY: upstreams is an array of pointers to the cycle's upstream confs.
    let upstreams = unsafe {
        if umcf.upstreams.elts.is_null() {
            return Err(not_found());
        }
        core::slice::from_raw_parts(
            umcf.upstreams.elts as *const *mut ngx_http_upstream_srv_conf_t,
            umcf.upstreams.nelts,
        )
    };
    upstreams
        .iter()
        // SAFETY: each entry is a live upstream conf of the cycle.
        .map(|&uscf| unsafe { &mut *uscf })
        .find(|uscf| !uscf.servers.is_null() && !uscf.srv_conf.is_null() && str_bytes(&uscf.host) == name)
        .ok_or_else(not_found)
}

/// The one round-robin peer of the upstream; RuntimeError when it has more.
fn sole_peer(uscf: &ngx_http_upstream_srv_conf_t) -> Result<&'static mut ngx_http_upstream_rr_peer_t, RubyError> {
    let multiple = || RubyError::runtime("don't support multiple server config");
    // SAFETY: servers is the upstream's array of ngx_http_upstream_server_t.
    if unsafe { (*uscf.servers).nelts } > 1 {
        return Err(multiple());
    }
    let peers = uscf.peer.data as *mut ngx_http_upstream_rr_peers_t;
    if peers.is_null() {
        return Err(RubyError::runtime("upstream has no round-robin peers"));
    }
    // SAFETY: peer.data of a round-robin based balancer is its peers list,
    // built at configuration time and alive as long as the cycle.
    unsafe {
        if (*peers).number != 1 || !(*peers).next.is_null() || (*peers).peer.is_null() {
            return Err(multiple());
        }
        Ok(&mut *(*peers).peer)
    }
}

/// The upstream conf this `Nginx::Upstream` was created for.
fn upstream_of(mrb: Mrb, self_: mrb_value) -> Result<&'static mut ngx_http_upstream_srv_conf_t, RubyError> {
    // SAFETY: live VM; reading an instance variable does not raise.
    let name = unsafe { mrb_iv_get(mrb.as_ptr(), self_, mrb.sym(NAME_IVAR)) };
    let name = mrb.str_bytes(name).ok_or_else(|| RubyError::runtime("Nginx::Upstream is not initialized"))?.to_vec();
    find_upstream(&name)
}

fn initialize(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = arg_bytes(mrb, args[0], "upstream name")?.to_vec();
    let uscf = find_upstream(&name)?;
    sole_peer(uscf)?;
    let value = mrb.str(&name);
    // SAFETY: live VM; self_ is the object being initialized.
    unsafe { mrb_iv_set(mrb.as_ptr(), self_, mrb.sym(NAME_IVAR), value) };
    Ok(self_)
}

/// `server`: the current peer, `"host:port"`.
fn server(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let peer = sole_peer(upstream_of(mrb, self_)?)?;
    Ok(mrb.str(str_bytes(&peer.name)))
}

/// Parses and resolves `host:port` once per distinct argument.
fn peer_addr(address: &[u8]) -> Result<&'static PeerAddr, RubyError> {
    if let Some(known) = PEER_ADDRS.with(|addrs| addrs.borrow().get(address).copied()) {
        return Ok(known);
    }
    let shown = String::from_utf8_lossy(address).into_owned();
    // SAFETY: a temporary pool for ngx_parse_url, destroyed below on every path.
    let pool = unsafe { ngx_create_pool(1024, (*host::cycle()).log) };
    if pool.is_null() {
        return Err(RubyError::runtime("out of memory"));
    }
    let parsed = parse_address(pool, address, &shown);
    // SAFETY: nothing parsed into the pool is used after this (copied out).
    unsafe { ngx_destroy_pool(pool) };
    let parsed: &'static PeerAddr = Box::leak(Box::new(parsed?));
    PEER_ADDRS.with(|addrs| addrs.borrow_mut().insert(address.to_vec(), parsed));
    Ok(parsed)
}

fn parse_address(pool: *mut ngx_pool_t, address: &[u8], shown: &str) -> Result<PeerAddr, RubyError> {
    let url = crate::ngx_util::pool_str(pool, address).ok_or_else(|| RubyError::runtime("out of memory"))?;
    // SAFETY: ngx_url_t is a plain C struct; all-zero is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.default_port = 80;
    // SAFETY: pool is live; u is initialised. Host names resolve here (blocking).
    if unsafe { ngx_parse_url(pool, &mut u) } != NGX_OK as ngx_int_t || u.naddrs == 0 || u.addrs.is_null() {
        let reason = if u.err.is_null() {
            String::from("host not found")
        } else {
            // SAFETY: u.err is a static NUL-terminated message.
            unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy().into_owned()
        };
        return Err(RubyError::argument(format!("invalid server \"{shown}\": {reason}")));
    }
    // SAFETY: addrs[0] is a parsed address of socklen bytes.
    unsafe {
        let first = &*u.addrs;
        let mut sockaddr: ngx_sockaddr_t = core::mem::zeroed();
        let len = (first.socklen as usize).min(core::mem::size_of::<ngx_sockaddr_t>());
        core::ptr::copy_nonoverlapping(first.sockaddr as *const u8, (&mut sockaddr as *mut ngx_sockaddr_t).cast(), len);
        Ok(PeerAddr { sockaddr, socklen: first.socklen, name: str_bytes(&first.name).into() })
    }
}

/// `server = "host:port"`: repoints this worker's peer (permanently).
fn set_server(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let address = arg_bytes(mrb, args[0], "server")?.to_vec();
    let uscf = upstream_of(mrb, self_)?;
    if !uscf.shm_zone.is_null() {
        return Err(RubyError::runtime("server= does not support upstreams with a shared memory zone"));
    }
    let peer = sole_peer(uscf)?;
    let addr = peer_addr(&address)?;
    peer.sockaddr = core::ptr::from_ref(&addr.sockaddr).cast_mut().cast();
    peer.socklen = addr.socklen;
    peer.name = ngx_str_t { len: addr.name.len(), data: addr.name.as_ptr().cast_mut() };
    peer.fails = 0;
    Ok(args[0])
}

fn keepalive_cache(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let uscf = upstream_of(mrb, self_)?;
    Ok(mrb.int(keepalive::max_cached(uscf) as i64))
}

fn set_keepalive_cache(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let n = arg_int(mrb, args[0], "keepalive_cache")?;
    if n < 2 {
        return Err(RubyError::argument("keepalive_cache must be greater than 1"));
    }
    let uscf = upstream_of(mrb, self_)?;
    let n = usize::try_from(n).map_err(|_| RubyError::argument("keepalive_cache is too large"))?;
    keepalive::set_max_cached(uscf, n).map_err(RubyError::runtime)?;
    Ok(args[0])
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let upstream = mrb.define_class_under(nginx, c"Upstream");
    mrb.define_method(upstream, c"initialize", ruby_fn!(initialize), ARGS_ANY);
    mrb.define_method(upstream, c"server", ruby_fn!(server), ARGS_ANY);
    mrb.define_method(upstream, c"server=", ruby_fn!(set_server), ARGS_ANY);
    mrb.define_method(upstream, c"keepalive_cache", ruby_fn!(keepalive_cache), ARGS_ANY);
    mrb.define_method(upstream, c"keepalive_cache=", ruby_fn!(set_keepalive_cache), ARGS_ANY);
}
