//! Stream upstreams as a session's script sees them: an `upstream{}` block
//! by name, its first server, and a server address parsed without DNS
//! (`Nginx::Stream::Connection`, `api/stream/connection.rs`). Applying
//! the choice when the proxy connects is `stream/upstream.rs`.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use crate::ngx_util::{pool_str, str_bytes};

/// The upstream module's list of `upstream{}` blocks (and the implicit
/// ones `proxy_pass host:port` makes), from a stream main_conf array.
pub(crate) fn upstreams<'a>(main_conf: *mut *mut c_void) -> &'a [*mut ngx_stream_upstream_srv_conf_t] {
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

/// The upstream block named `name`, as seen from session `s`.
pub(crate) fn find(s: *mut ngx_stream_session_t, name: &[u8]) -> Option<*mut ngx_stream_upstream_srv_conf_t> {
    // SAFETY: s is live; its main_conf array is the stream{} one.
    let main_conf = unsafe { (*s).main_conf };
    // SAFETY: the upstream confs live as long as the configuration.
    upstreams(main_conf).iter().copied().find(|&upstream| str_bytes(unsafe { &(*upstream).host }) == name)
}

/// The name of the upstream's first server (where its balancer starts).
pub(crate) fn first_server_name<'a>(upstream: *mut ngx_stream_upstream_srv_conf_t) -> Option<&'a [u8]> {
    // SAFETY: peer.data of a round-robin based balancer (all of nginx's) is
    // its peers list, alive as long as the configuration.
    unsafe {
        let peers = (*upstream).peer.data as *const ngx_stream_upstream_rr_peers_t;
        if peers.is_null() || (*peers).peer.is_null() {
            return None;
        }
        Some(str_bytes(&(*(*peers).peer).name))
    }
}

/// A server address parsed into `pool`: the sockaddr and the text as given.
pub struct ParsedServer {
    pub sockaddr: *mut sockaddr,
    pub socklen: socklen_t,
    pub name: ngx_str_t,
}

/// Parses `ip:port` (or `[ipv6]:port`, `unix:/path`) into `pool`. Host
/// names are refused: resolving would block the worker.
pub(crate) fn parse_server(pool: *mut ngx_pool_t, address: &[u8]) -> Result<ParsedServer, String> {
    let shown = || String::from_utf8_lossy(address).into_owned();
    if address.is_empty() {
        return Err(String::from("upstream_server= needs \"ip:port\", not an empty String"));
    }
    let name = pool_str(pool, address).ok_or("out of memory")?;
    let (sockaddr, socklen) = match ipv4_sockaddr(pool, address)? {
        Some(parsed) => parsed,
        None => parse_other(pool, name, &shown)?,
    };
    Ok(ParsedServer { sockaddr, socklen, name })
}

/// The common `a.b.c.d:port`, without nginx's general URL parser (which
/// formats the address back to text); None for any other form.
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

/// `a.b.c.d:port` (decimal, each octet 1..=3 digits and <= 255, the port
/// 1..=5 digits and 1..=65535) by hand, in one pass: this runs for every
/// connection that chooses its server.
fn parse_ipv4_port(text: &[u8]) -> Option<([u8; 4], u16)> {
    let mut ip = [0u8; 4];
    // 0..=3: the octet being read, 4: the port
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &byte in text {
        let digit = byte.wrapping_sub(b'0');
        if digit < 10 {
            // at most 5 digits anywhere (the port's); octets are checked at their end
            digits += 1;
            if digits > 5 {
                return None;
            }
            value = value * 10 + u32::from(digit);
            continue;
        }
        let next = match byte {
            b'.' if part < 3 => part + 1,
            b':' if part == 3 => 4,
            _ => return None,
        };
        if digits == 0 || digits > 3 {
            return None;
        }
        ip[part] = u8::try_from(value).ok()?;
        (part, value, digits) = (next, 0, 0);
    }
    let port = u16::try_from(value).ok().filter(|&port| part == 4 && digits > 0 && port > 0)?;
    Some((ip, port))
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
