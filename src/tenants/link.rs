//! A worker's one connection to the supervisor: non-blocking, in nginx's
//! event loop, shared by every request of the worker. Requests wait for
//! their answer by tag; answers are delivered by posting the request's
//! wake event, so nothing here re-enters the phase engine.

use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr;
use std::collections::HashMap;
use std::os::fd::{IntoRawFd, RawFd};

use ngx::ffi::*;

pub use tenant_protocol::{Reply, Spawn};
use tenant_protocol::{Request, MAX_LINE};

use super::access::TenantCtx;
use crate::ngx_util::log;

#[derive(Default)]
struct Link {
    conn: Option<*mut ngx_connection_t>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Requests waiting for an answer, by tag.
    pending: HashMap<u32, *const TenantCtx>,
    next_tag: u32,
}

thread_local! {
    static LINK: RefCell<Link> = RefCell::new(Link::default());
}

fn cycle_log() -> *mut ngx_log_t {
    // SAFETY: ngx_cycle is the running cycle of this worker.
    unsafe { (*ngx_cycle).log }
}

/// Asks for a runner; the answer is delivered to `ctx`. Returns the tag.
pub fn acquire(ctx: *const TenantCtx, kind: &str, uid: u32, gid: u32, docroot: &[u8]) -> Result<u32, String> {
    LINK.with_borrow_mut(|link| {
        let tag = link.next_tag.wrapping_add(1).max(1);
        let line = Request::acquire(tag, kind, uid, gid, docroot).encode()?;
        link.connect()?;
        link.next_tag = tag;
        link.outbuf.extend_from_slice(&line);
        link.pending.insert(tag, ctx);
        link.flush();
        if link.conn.is_none() {
            return Err(String::from("the connection to the supervisor failed"));
        }
        Ok(tag)
    })
}

/// Gives a runner back (the request that held it has ended).
pub fn release(runner: u64) {
    LINK.with_borrow_mut(|link| {
        if link.conn.is_some() {
            link.send(&Request::Release { runner });
        }
    });
}

/// Gives a runner back to be killed: its request failed (502, 504) or was
/// cut short, so the runner may still be busy with it.
pub fn discard(runner: u64) {
    LINK.with_borrow_mut(|link| {
        if link.conn.is_some() {
            link.send(&Request::Discard { runner });
        }
    });
}

/// A waiting request went away: its answer, if one comes, is given back.
pub fn cancel(tag: u32) {
    LINK.with_borrow_mut(|link| {
        link.pending.remove(&tag);
    });
}

impl Link {
    fn connect(&mut self) -> Result<(), String> {
        if self.conn.is_some() {
            return Ok(());
        }
        let path = super::spawn::supervisor_socket().ok_or("no supervisor in this configuration")?;
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("socket: {e}"))?;
        let addr = UnixAddr::new(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawFd = fd.into_raw_fd();
        if let Err(e) = connect(raw, &addr) {
            // SAFETY: raw is our own descriptor, not registered anywhere.
            unsafe { libc::close(raw) };
            return Err(format!("cannot connect to the supervisor at {}: {e}", path.display()));
        }
        let log = cycle_log();
        // SAFETY: raw is a connected socket we own; nginx takes it over.
        unsafe {
            let c = ngx_get_connection(raw, log);
            if c.is_null() {
                libc::close(raw);
                return Err(String::from("no free connection for the supervisor link"));
            }
            (*c).data = ptr::null_mut::<c_void>();
            (*(*c).read).handler = Some(on_read);
            (*(*c).write).handler = Some(on_write);
            (*(*c).read).log = log;
            (*(*c).write).log = log;
            if ngx_handle_read_event((*c).read, 0) != NGX_OK as ngx_int_t {
                ngx_close_connection(c);
                return Err(String::from("cannot watch the supervisor link"));
            }
            self.conn = Some(c);
        }
        self.inbuf.clear();
        self.outbuf.clear();
        Ok(())
    }

    /// Queues a message that cannot fail to encode (`R`, `K`) and sends what it can.
    fn send(&mut self, request: &Request) {
        if let Ok(line) = request.encode() {
            self.outbuf.extend_from_slice(&line);
        }
        self.flush();
    }

    fn flush(&mut self) {
        let Some(c) = self.conn else {
            return;
        };
        while !self.outbuf.is_empty() {
            // SAFETY: c is our live connection; send reads outbuf only.
            let n = unsafe { libc::send((*c).fd, self.outbuf.as_ptr().cast(), self.outbuf.len(), libc::MSG_NOSIGNAL) };
            if n > 0 {
                self.outbuf.drain(..n as usize);
                continue;
            }
            let err = std::io::Error::last_os_error();
            if n < 0 && err.kind() == std::io::ErrorKind::WouldBlock {
                // SAFETY: c is live; asks nginx to call on_write when writable.
                unsafe { ngx_handle_write_event((*c).write, 0) };
                return;
            }
            if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            self.lost(&format!("send: {err}"));
            return;
        }
    }

    /// The supervisor went away: every waiting request gets 503.
    fn lost(&mut self, why: &str) {
        if let Some(c) = self.conn.take() {
            // SAFETY: c is our live connection; this closes its fd and events.
            unsafe { ngx_close_connection(c) };
        }
        log(cycle_log(), NGX_LOG_ERR, &format!("tenant_runner: lost the connection to the supervisor ({why})"));
        self.inbuf.clear();
        self.outbuf.clear();
        for (tag, ctx) in self.pending.drain() {
            // SAFETY: a pending ctx lives until its request's cleanup removes it.
            unsafe {
                (*ctx).deliver(Reply::Err { tag, status: 503, reason: String::from("supervisor connection lost") })
            };
        }
    }

    fn read(&mut self) {
        let Some(c) = self.conn else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: c is our live connection; recv writes into the local buffer.
            let n = unsafe { libc::recv((*c).fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                self.inbuf.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            let err = std::io::Error::last_os_error();
            if n < 0 && err.kind() == std::io::ErrorKind::WouldBlock {
                break;
            }
            if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            self.dispatch();
            self.lost(if n == 0 { "closed by the supervisor" } else { "recv failed" });
            return;
        }
        self.dispatch();
        if self.inbuf.len() > MAX_LINE {
            self.lost("line too long");
        }
    }

    fn dispatch(&mut self) {
        while let Some(end) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            match Reply::parse(line) {
                Ok(reply) => match self.pending.remove(&reply.tag()) {
                    // SAFETY: as in lost().
                    Some(ctx) => unsafe { (*ctx).deliver(reply) },
                    None => {
                        if let Reply::Ok { runner, .. } = reply {
                            // its request is gone: give the runner back at once
                            if let Ok(line) = (Request::Release { runner }).encode() {
                                self.outbuf.extend_from_slice(&line);
                            }
                        }
                    }
                },
                Err(why) => log(
                    cycle_log(),
                    NGX_LOG_ERR,
                    &format!(
                        "tenant_runner: unreadable answer from the supervisor ({why}): \"{}\"",
                        String::from_utf8_lossy(line)
                    ),
                ),
            }
        }
        self.flush();
    }
}

unsafe extern "C" fn on_read(_ev: *mut ngx_event_t) {
    LINK.with_borrow_mut(|link| link.read());
}

unsafe extern "C" fn on_write(_ev: *mut ngx_event_t) {
    LINK.with_borrow_mut(|link| link.flush());
}
