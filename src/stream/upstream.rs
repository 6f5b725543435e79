//! The upstream server a session's script chose, applied when the proxy
//! connects.
//!
//! `Nginx::Stream::Connection#upstream_server = "ip:port"` records a
//! [`ChosenServer`] in the session (`host/stream.rs`). Every upstream's peer init is wrapped at
//! configuration time ([`wrap_upstreams`]); when the proxy module starts
//! connecting, the wrapper runs the upstream's own init and, if this
//! session chose a server of that upstream, hands the proxy that address
//! instead of the balancer's pick. The choice is per session: sessions
//! waiting in `Async.sleep` or proxying at the same time each keep theirs
//! (ngx_mruby rewrote the upstream's first server for the whole worker).

use core::ffi::c_void;

use ngx::ffi::*;

use super::conf::{main_conf_of_session, StreamMainConf};
use super::module_ctx::existing_state;
use crate::host::stream::ChosenServer;
use crate::upstream::stream::upstreams;

type PeerInit = unsafe extern "C" fn(*mut ngx_stream_session_t, *mut ngx_stream_upstream_srv_conf_t) -> ngx_int_t;

/// An upstream whose peer init is wrapped, and its own init.
pub struct WrappedUpstream {
    upstream: *mut ngx_stream_upstream_srv_conf_t,
    own_init: PeerInit,
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
