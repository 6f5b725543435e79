//! The upstream server a session's script chose.
//!
//! `Nginx::Stream::Connection#upstream_server = "ip:port"` records a
//! [`ChosenServer`] in the session. Every upstream's peer init is wrapped at
//! configuration time ([`wrap_upstreams`]); when the proxy module starts
//! connecting, the wrapper runs the upstream's own init and, if this
//! session chose a server of that upstream, hands the proxy that address
//! instead of the balancer's pick. The choice is per session: sessions
//! waiting in `Async.sleep` or proxying at the same time each keep theirs
//! (ngx_mruby rewrote the upstream's first server for the whole worker).

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use super::conf::{main_conf_of_session, StreamMainConf};
use super::session::{existing_state, ChosenServer};
use crate::ngx_util::{pool_str, str_bytes};

type PeerInit = unsafe extern "C" fn(*mut ngx_stream_session_t, *mut ngx_stream_upstream_srv_conf_t) -> ngx_int_t;

/// An upstream whose peer init is wrapped, and its own init.
pub struct WrappedUpstream {
    upstream: *mut ngx_stream_upstream_srv_conf_t,
    own_init: PeerInit,
}

/// The upstream module's list of `upstream{}` blocks (and implicit ones).
fn upstreams<'a>(main_conf: *mut *mut c_void) -> &'a [*mut ngx_stream_upstream_srv_conf_t] {
    // SAFETY: main_conf is a stream main_conf array; the upstream module's
    // entry is its main conf, whose `upstreams` holds uscf pointers.
    unsafe {
        let index = (*ptr::addr_of!(ngx_stream_upstream_module)).ctx_index;
        let umcf = *main_conf.add(index) as *const ngx_stream_upstream_main_conf_t;
        if umcf.is_null() || (*umcf).upstreams.nelts == 0 {
            return &[];
        }
        core::slice::from_raw_parts((*umcf).upstreams.elts as *const _, (*umcf).upstreams.nelts)
    }
}

/// Wraps every upstream's peer init (postconfiguration, after the upstream
/// module set them).
pub(crate) fn wrap_upstreams(cf: &mut ngx_conf_t, main: &mut StreamMainConf) -> Result<(), ()> {
    // SAFETY: inside stream{} cf->ctx is the stream conf context.
    let main_conf = unsafe { (*(cf.ctx as *mut ngx_stream_conf_ctx_t)).main_conf };
    for &upstream in upstreams(main_conf) {
        // SAFETY: the upstream confs live as long as the configuration.
        let peer = unsafe { &mut (*upstream).peer };
        if let Some(own_init) = peer.init {
            main.peer_inits.push(WrappedUpstream { upstream, own_init });
            peer.init = Some(init_peer);
        }
    }
    Ok(())
}

/// The upstream's own init, then the session's chosen server if it has one.
unsafe extern "C" fn init_peer(
    s: *mut ngx_stream_session_t,
    upstream: *mut ngx_stream_upstream_srv_conf_t,
) -> ngx_int_t {
    let Some(own_init) = main_conf_of_session(s)
        .and_then(|main| main.peer_inits.iter().find(|wrapped| wrapped.upstream == upstream))
        .map(|wrapped| wrapped.own_init)
    else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: the proxy module calls this with its live session and upstream.
    let rc = unsafe { own_init(s, upstream) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let Some(chosen) = existing_state(s).map(|state| state.chosen.get()).filter(|c| !c.is_null()) else {
        return rc;
    };
    // SAFETY: chosen lives in the session pool; s->upstream is the proxy's.
    unsafe {
        if (*chosen).upstream != upstream {
            return rc;
        }
        let pc = &mut (*(*s).upstream).peer;
        pc.data = chosen.cast();
        pc.get = Some(get_chosen_peer);
        pc.free = Some(free_chosen_peer);
        pc.notify = None;
        pc.set_session = Some(no_peer_session);
        pc.save_session = Some(no_save_peer_session);
        pc.tries = 1;
    }
    rc
}

unsafe extern "C" fn get_chosen_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: data is the session's ChosenServer (set by init_peer).
    unsafe {
        let chosen = &mut *(data as *mut ChosenServer);
        (*pc).sockaddr = chosen.sockaddr;
        (*pc).socklen = chosen.socklen;
        (*pc).name = &mut chosen.name;
    }
    NGX_OK as ngx_int_t
}

/// One try only: a chosen server that fails ends the session (502).
unsafe extern "C" fn free_chosen_peer(pc: *mut ngx_peer_connection_t, _data: *mut c_void, _state: ngx_uint_t) {
    // SAFETY: nginx passes the live peer connection.
    unsafe { (*pc).tries = 0 };
}

unsafe extern "C" fn no_peer_session(_pc: *mut ngx_peer_connection_t, _data: *mut c_void) -> ngx_int_t {
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn no_save_peer_session(_pc: *mut ngx_peer_connection_t, _data: *mut c_void) {}

/// The upstream block named `name`, as seen from session `s`.
pub(crate) fn find_upstream(s: *mut ngx_stream_session_t, name: &[u8]) -> Option<*mut ngx_stream_upstream_srv_conf_t> {
    // SAFETY: s is live; its main_conf array is the stream{} one.
    let main_conf = unsafe { (*s).main_conf };
    // SAFETY: the upstream confs live as long as the configuration.
    upstreams(main_conf).iter().copied().find(|&upstream| str_bytes(unsafe { &(*upstream).host }) == name)
}

/// The name of the upstream's first server (what the balancer starts from).
pub(crate) fn first_server_name(upstream: *mut ngx_stream_upstream_srv_conf_t) -> Option<Vec<u8>> {
    // SAFETY: peer.data of a round-robin based balancer (all of nginx's) is
    // its peers list, alive as long as the configuration.
    unsafe {
        let peers = (*upstream).peer.data as *const ngx_stream_upstream_rr_peers_t;
        if peers.is_null() || (*peers).peer.is_null() {
            return None;
        }
        Some(str_bytes(&(*(*peers).peer).name).to_vec())
    }
}

/// Parses `ip:port` (or `[ipv6]:port`, `unix:/path`) into a
/// [`ChosenServer`] in `pool`. Host names are refused: resolving would
/// block the worker.
pub(crate) fn choose_server(
    pool: *mut ngx_pool_t,
    upstream: *mut ngx_stream_upstream_srv_conf_t,
    address: &[u8],
) -> Result<*mut ChosenServer, String> {
    let shown = || String::from_utf8_lossy(address).into_owned();
    if address.is_empty() {
        return Err(String::from("upstream_server= needs \"ip:port\", not an empty String"));
    }
    let name = pool_str(pool, address).ok_or("out of memory")?;
    let (sockaddr, socklen) = match ipv4_sockaddr(pool, address)? {
        Some(parsed) => parsed,
        None => parse_other(pool, name, &shown)?,
    };
    // SAFETY: the chosen server lives in the session pool, like the session's state.
    unsafe {
        let chosen = ngx_palloc(pool, core::mem::size_of::<ChosenServer>()) as *mut ChosenServer;
        if chosen.is_null() {
            return Err(String::from("out of memory"));
        }
        chosen.write(ChosenServer { upstream, sockaddr, socklen, name });
        Ok(chosen)
    }
}

/// The common `a.b.c.d:port`, parsed without nginx's general URL parser
/// (which formats the address back to text); None for any other form.
fn ipv4_sockaddr(pool: *mut ngx_pool_t, address: &[u8]) -> Result<Option<(*mut sockaddr, socklen_t)>, String> {
    let Some((ip, port)) = parse_ipv4_port(address) else {
        return Ok(None);
    };
    // SAFETY: a zeroed sockaddr_in in the session pool, filled below.
    unsafe {
        let sin = ngx_pcalloc(pool, core::mem::size_of::<sockaddr_in>()) as *mut sockaddr_in;
        if sin.is_null() {
            return Err(String::from("out of memory"));
        }
        (*sin).sin_family = AF_INET as sa_family_t;
        (*sin).sin_port = port.to_be();
        (*sin).sin_addr.s_addr = u32::from_be_bytes(ip).to_be();
        Ok(Some((sin.cast(), core::mem::size_of::<sockaddr_in>() as socklen_t)))
    }
}

/// `a.b.c.d:port` (decimal, no leading `+`, each octet <= 255, port
/// 1..=65535) by hand: this runs for every connection that chooses.
fn parse_ipv4_port(text: &[u8]) -> Option<([u8; 4], u16)> {
    let mut ip = [0u8; 4];
    let mut rest = text;
    for (i, octet) in ip.iter_mut().enumerate() {
        let separator = if i == 3 { b':' } else { b'.' };
        let end = rest.iter().position(|&b| b == separator)?;
        *octet = u8::try_from(decimal(&rest[..end], 3)?).ok()?;
        rest = &rest[end + 1..];
    }
    let port = u16::try_from(decimal(rest, 5)?).ok().filter(|&p| p > 0)?;
    Some((ip, port))
}

/// A decimal number of 1..=max_digits digits.
fn decimal(digits: &[u8], max_digits: usize) -> Option<u32> {
    if digits.is_empty() || digits.len() > max_digits || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// IPv6 and unix-domain addresses, through nginx's URL parser (no DNS).
fn parse_other(
    pool: *mut ngx_pool_t,
    url: ngx_str_t,
    shown: &dyn Fn() -> String,
) -> Result<(*mut sockaddr, socklen_t), String> {
    // SAFETY: ngx_url_t is a plain C struct; all-zero is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.set_no_resolve(1);
    // SAFETY: pool is the live session pool; u is initialised above.
    if unsafe { ngx_parse_url(pool, &mut u) } != NGX_OK as ngx_int_t {
        let reason = if u.err.is_null() {
            String::from("invalid address")
        } else {
            // SAFETY: u.err is a static NUL-terminated message.
            unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy().into_owned()
        };
        return Err(format!("upstream_server=: {reason} in \"{}\"", shown()));
    }
    if u.naddrs == 0 || u.addrs.is_null() {
        return Err(format!("upstream_server= takes an IP address and a port (no DNS lookup), not \"{}\"", shown()));
    }
    if u.no_port() != 0 && u.family != AF_UNIX as i32 {
        return Err(format!("upstream_server=: no port in \"{}\"", shown()));
    }
    // SAFETY: u.addrs[0] is the parsed address in the session pool.
    Ok(unsafe { ((*u.addrs).sockaddr, (*u.addrs).socklen) })
}
