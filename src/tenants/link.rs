//! A worker's one connection to the supervisor: non-blocking, in nginx's
//! event loop, shared by every request of the worker. Requests wait for
//! their answer by tag; answers are delivered by posting the request's
//! wake event, so nothing here re-enters the phase engine. The runners the
//! worker holds (`tenant_protocol::held`) are kept here too: a request whose owner,
//! site and kind have an idle runner held by this worker takes it without
//! asking the supervisor.

use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr;
use std::collections::HashMap;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use ngx::ffi::*;

pub use tenant_protocol::{Reply, Spawn};
use tenant_protocol::{Request, MAX_LINE};

use super::access::TenantCtx;
use crate::ngx_util::log;
use tenant_protocol::held::{Finished, Held, Key, Runner, Wanted};

#[derive(Default)]
struct Link {
    conn: Option<*mut ngx_connection_t>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Requests waiting for an answer, by tag, with what they asked for.
    pending: HashMap<u32, (*const TenantCtx, Key)>,
    next_tag: u32,
    held: Held,
    /// Gives idle held runners back after `keep_ms` (allocated once, never freed:
    /// nginx may hold its address in the timer tree until the worker exits).
    keep_timer: Option<*mut ngx_event_t>,
    keep_ms: u64,
}

thread_local! {
    static LINK: RefCell<Link> = RefCell::new(Link::default());
}

fn cycle_log() -> *mut ngx_log_t {
    // SAFETY: ngx_cycle is the running cycle of this worker.
    unsafe { (*ngx_cycle).log }
}

/// How a request gets its runner.
pub enum Acquired {
    /// An idle runner this worker held: the request has it now.
    Kept(Runner),
    /// The supervisor was asked; the answer is delivered to the request's
    /// context later. The tag of the question.
    Asked(u32),
}

/// A runner of `kind` for the owner `uid:gid` of `docroot`: one this worker
/// keeps idle, or else the supervisor's answer, delivered to `ctx`.
/// With a resource `class`, the supervisor always hands the runner over (it
/// moves it into the class's group first): a kept one is not used.
pub fn acquire(
    ctx: *const TenantCtx,
    kind: &str,
    uid: u32,
    gid: u32,
    docroot: &[u8],
    class: Option<&str>,
) -> Result<Acquired, String> {
    LINK.with_borrow_mut(|link| {
        let key = Key { kind: kind.to_string(), uid, gid, docroot: docroot.to_vec() };
        if link.conn.is_some() && class.is_none() {
            if let Some(runner) = link.held.take(&key) {
                return Ok(Acquired::Kept(runner));
            }
        }
        let tag = link.next_tag.wrapping_add(1).max(1);
        let line = Request::acquire_in_class(tag, kind, uid, gid, docroot, class).encode()?;
        link.connect()?;
        link.next_tag = tag;
        link.outbuf.extend_from_slice(&line);
        link.pending.insert(tag, (ctx, key));
        link.flush();
        if link.conn.is_none() {
            return Err(String::from("the connection to the supervisor failed"));
        }
        Ok(Acquired::Asked(tag))
    })
}

/// The request on `runner` has ended; `failed`: with a 502 or 504, or cut
/// short (the runner may still be busy with it: it is killed). Otherwise
/// the worker keeps the runner idle for up to `keep_ms` for its next
/// request of the same owner, site and kind, unless its budget is spent,
/// the supervisor wants it, or the worker is exiting.
pub fn finish(runner: u64, failed: bool, keep_ms: u64) {
    // SAFETY: plain reads of nginx's process-state globals.
    let exiting = unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 };
    LINK.with_borrow_mut(|link| {
        // SAFETY: nginx's cached clock, read on its own thread.
        let now = unsafe { ngx_current_msec } as u64;
        match link.held.finish(runner, failed, !exiting && keep_ms > 0, now) {
            Finished::Kept => {
                link.keep_ms = keep_ms;
                link.arm_keep_timer();
            }
            Finished::Release { served } => link.send(&Request::Release { runner, served }),
            Finished::Discard => link.send(&Request::Discard { runner }),
            Finished::Unknown => {}
        }
    });
}

/// The worker exits: every runner it keeps goes back now (none is busy).
pub fn give_all_back() {
    LINK.with_borrow_mut(|link| {
        for (runner, served) in link.held.expire(u64::MAX, 0) {
            link.send(&Request::Release { runner, served });
        }
        if let Some(ev) = link.keep_timer {
            // SAFETY: ev is our own event, allocated in arm_keep_timer.
            unsafe {
                if (*ev).timer_set() != 0 {
                    ngx_del_timer(ev);
                }
            }
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

    /// Queues a message that cannot fail to encode (`R`, `K`) and sends
    /// what it can (nothing without a connection: its runners are gone).
    fn send(&mut self, request: &Request) {
        if self.conn.is_none() {
            return;
        }
        if let Ok(line) = request.encode() {
            self.outbuf.extend_from_slice(&line);
        }
        self.flush();
    }

    /// Makes sure idle held runners are looked at again in `keep_ms`.
    fn arm_keep_timer(&mut self) {
        let ev = match self.keep_timer {
            Some(ev) => ev,
            None => {
                // SAFETY: a zeroed ngx_event_t is a valid idle event; it is
                // never freed (see keep_timer).
                let ev = Box::into_raw(Box::new(unsafe { core::mem::zeroed::<ngx_event_t>() }));
                // SAFETY: ev was just allocated.
                unsafe {
                    (*ev).handler = Some(on_keep_timer);
                    (*ev).log = cycle_log();
                    // a kept runner never holds up a graceful worker exit
                    (*ev).set_cancelable(1);
                }
                self.keep_timer = Some(ev);
                ev
            }
        };
        // SAFETY: ev is our live event.
        unsafe {
            if (*ev).timer_set() == 0 {
                ngx_add_timer(ev, self.keep_ms as ngx_msec_t);
            }
        }
    }

    /// Gives back the runners idle for `keep_ms` or more.
    fn expire_kept(&mut self) {
        // SAFETY: nginx's cached clock.
        let now = unsafe { ngx_current_msec } as u64;
        for (runner, served) in self.held.expire(now, self.keep_ms) {
            self.send(&Request::Release { runner, served });
        }
        if self.held.any_idle() {
            self.arm_keep_timer();
        }
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
        // its runners die with it
        self.held.clear();
        for (tag, (ctx, _)) in self.pending.drain() {
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
                Ok(Reply::GiveBack { runner }) => {
                    let answer = match self.held.want(runner) {
                        Wanted::Now { served } => Some(Request::Release { runner, served }),
                        Wanted::Busy => Some(Request::Busy { runner }),
                        Wanted::Unknown => None,
                    };
                    if let Some(Ok(line)) = answer.map(|a| a.encode()) {
                        self.outbuf.extend_from_slice(&line);
                    }
                }
                Ok(reply) => match reply.tag().and_then(|tag| self.pending.remove(&tag)) {
                    Some((ctx, key)) => {
                        if let Reply::Ok { runner, pid, uid, budget, ref socket, .. } = reply {
                            let socket = socket.as_os_str().as_bytes().to_vec();
                            self.held.insert(key, Runner { id: runner, pid, uid, socket }, budget);
                        }
                        // SAFETY: as in lost().
                        unsafe { (*ctx).deliver(reply) }
                    }
                    None => {
                        if let Reply::Ok { runner, .. } = reply {
                            // its request is gone: give the runner back at once
                            if let Ok(line) = (Request::Release { runner, served: 0 }).encode() {
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

unsafe extern "C" fn on_keep_timer(_ev: *mut ngx_event_t) {
    LINK.with_borrow_mut(|link| link.expire_kept());
}
