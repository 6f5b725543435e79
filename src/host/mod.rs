//! Who Ruby is running for: the invocation host.
//!
//! Every entry into the VM is wrapped in [`enter`], which installs one
//! [`Host`] for the duration of the call and puts the previous one back
//! after it (should a VM entry ever happen inside another, `vm::run`
//! catches its exception so this unwinding still runs; a handshake while a
//! request waits is not nesting: a waiting request has no host installed). The
//! Ruby API asks [`current`] whom it serves instead of probing globals; this
//! module's `CURRENT` is the only ambient pointer of the crate.
//!
//! A host has a kind (an HTTP request, a TLS handshake, a server block being
//! parsed, a process hook) and a [`Context`]: the kind plus where in it the
//! script runs (which phase, which filter, `mruby_set`). A Ruby method that
//! only makes sense somewhere can name the contexts it allows with
//! [`require`] / [`require_or`] (the Async waits, `Nginx::SSL`,
//! `add_listener` do), and misuse raises instead of touching the wrong thing.
//!
//! The request host owns the request's per-request state
//! ([`request::RequestCtx`]): the `rputs` buffer and status, the body
//! filter's body and output, pending waits and the last subrequest
//! response ([`wait`]), request body access ([`body`]) and the request's
//! held-aside globals ([`globals`]).
//!
//! May import: `vm/` and `ngx_util`. Never `api/`, `phases/`, `conf/`,
//! `tls/` (they build hosts; a host does not know who built it).
//!
//! # How to add a host kind
//! 1. Add a variant to [`Host`] holding a reference to the kind's state
//!    (a struct in its own file here, e.g. `stream.rs` with the session
//!    and its output), and a [`Context`] bit per place it runs scripts
//!    (e.g. `STREAM_CONTENT`), added to [`Context::name`].
//! 2. The code that decides when to run (a `stream/` handler, a tenant
//!    runner) builds the state and calls `host::enter(&Host::Stream(&state),
//!    || run the script)`; nothing else sets the current host.
//! 3. API methods that serve the new kind match on it (`Host::Stream(s)`)
//!    or call `require(Context::STREAM_CONTENT | ...)`; methods that do not
//!    list it raise "API disabled in the context of ..." there, unchanged.
//! 4. If scripts of the kind may wait, give the state a
//!    [`wait::Waits`]-like record and arm/yield through [`wait`].

pub mod body;
pub mod filter;
pub mod globals;
pub mod handshake;
pub mod request;
pub mod server_config;
pub mod wait;

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use ngx::ffi::{ngx_cycle, ngx_cycle_t, ngx_http_request_t, ngx_log_t};

use crate::vm::{RubyError, Vm};
pub use handshake::HandshakeHost;
pub use request::{RequestCtx, RequestHost};
pub use server_config::{ListenSpec, ServerConfigHost};

/// Where a script runs: the host kind plus the place in it, as one bit, so
/// a method can allow a set of places (`Context::REWRITE | Context::ACCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context(u32);

impl Context {
    pub const POST_READ: Context = Context(1 << 0);
    pub const SERVER_REWRITE: Context = Context(1 << 1);
    pub const REWRITE: Context = Context(1 << 2);
    pub const ACCESS: Context = Context(1 << 3);
    pub const CONTENT: Context = Context(1 << 4);
    pub const LOG: Context = Context(1 << 5);
    pub const HEADER_FILTER: Context = Context(1 << 6);
    pub const BODY_FILTER: Context = Context(1 << 7);
    /// `mruby_set`: inside the rewrite module's script codes.
    pub const SET: Context = Context(1 << 8);
    pub const SSL_HANDSHAKE: Context = Context(1 << 9);
    pub const SERVER_CONFIG: Context = Context(1 << 10);
    pub const INIT: Context = Context(1 << 11);
    pub const INIT_WORKER: Context = Context(1 << 12);
    pub const EXIT_WORKER: Context = Context(1 << 13);

    /// Every context of an HTTP request.
    pub const REQUEST: Context = Context(0x1ff);
    /// The request phases where a script may wait (`Nginx::Async`).
    pub const WAITABLE: Context = Context(0x1f);

    /// Whether `self` is one of `allowed`.
    pub const fn within(self, allowed: Context) -> bool {
        self.0 & allowed.0 != 0
    }

    /// The directive family, for "API disabled in the context of ..." messages.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 14] = [
            "mruby_post_read_handler",
            "mruby_server_rewrite_handler",
            "mruby_rewrite_handler",
            "mruby_access_handler",
            "mruby_content_handler",
            "mruby_log_handler",
            "mruby_output_header_filter",
            "mruby_output_body_filter",
            "mruby_set",
            "mruby_ssl_handshake_handler",
            "mruby_server_context_handler_code",
            "mruby_init",
            "mruby_init_worker",
            "mruby_exit_worker",
        ];
        NAMES.get(self.0.trailing_zeros() as usize).copied().unwrap_or("(several contexts)")
    }
}

impl core::ops::BitOr for Context {
    type Output = Context;
    fn bitor(self, other: Context) -> Context {
        Context(self.0 | other.0)
    }
}

/// Whom the running script serves.
pub enum Host<'a> {
    /// An HTTP request, in one of its phases or filters.
    Request(RequestHost),
    /// A TLS handshake (`mruby_ssl_handshake_handler`).
    Handshake(&'a HandshakeHost),
    /// A `server{}` block being parsed (`mruby_server_context_handler_code`).
    ServerConfig(&'a ServerConfigHost<'a>),
    /// A process hook: `mruby_init` (master), `mruby_init_worker`,
    /// `mruby_exit_worker`, with the cycle it runs for.
    Process(Context, *mut ngx_cycle_t),
}

impl Host<'_> {
    /// The kind plus the place the script runs.
    pub fn context(&self) -> Context {
        match self {
            Host::Request(request) => request.context(),
            Host::Handshake(_) => Context::SSL_HANDSHAKE,
            Host::ServerConfig(_) => Context::SERVER_CONFIG,
            Host::Process(context, _) => *context,
        }
    }

    /// The cycle the script runs for: the one being configured for a server
    /// block or `mruby_init`, the running one otherwise.
    pub fn cycle(&self) -> *mut ngx_cycle_t {
        match self {
            Host::ServerConfig(server) => server.cycle(),
            Host::Process(_, cycle) => *cycle,
            // SAFETY: ngx_cycle is nginx's running cycle, set before any request or handshake.
            Host::Request(_) | Host::Handshake(_) => unsafe { ngx_cycle },
        }
    }

    /// Where the script's log lines go: the request's or the connection's
    /// log (with nginx's client/request context), else the cycle's.
    pub fn log(&self) -> *mut ngx_log_t {
        match self {
            Host::Request(request) => request.log(),
            Host::Handshake(handshake) => handshake.log(),
            // SAFETY: the cycle of a server block or process hook is live while its script runs.
            Host::ServerConfig(_) | Host::Process(..) => unsafe { (*self.cycle()).log },
        }
    }

    /// The request host, if this is one.
    pub fn request(&self) -> Option<&RequestHost> {
        match self {
            Host::Request(request) => Some(request),
            _ => None,
        }
    }
}

/// The installed host (nginx workers run Ruby on one thread; the atomic
/// only makes the static safe Rust). Set by [`enter`] only.
static CURRENT: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Puts the previous host back however the VM call ends.
struct Installed(*mut ());

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.store(self.0, Ordering::Relaxed);
    }
}

/// Runs `vm_call` (a VM entry) with `host` installed.
#[inline]
pub fn enter<R>(host: &Host<'_>, vm_call: impl FnOnce() -> R) -> R {
    let _installed = Installed(CURRENT.swap(ptr::from_ref(host).cast_mut().cast(), Ordering::Relaxed));
    vm_call()
}

/// Runs `vm_call` (a VM entry for a request) with the request host
/// installed, and the request's globals in the VM for that time only:
/// put back before, taken out after (`globals.rs`). `Err` when they cannot
/// be held (out of memory); the call's own result otherwise.
#[inline]
pub(crate) fn enter_request<R>(vm: &Vm, request: RequestHost, vm_call: impl FnOnce() -> R) -> Result<R, ()> {
    let (r, ctx) = (request.as_ptr(), request.state());
    // a nested entry for the same request leaves the globals to the outer one
    let outermost = CURRENT.load(Ordering::Relaxed).is_null();
    if outermost {
        globals::put_back(vm, r, ctx);
    }
    let result = enter(&Host::Request(request), vm_call);
    if outermost {
        globals::take_out(vm, r, ctx)?;
    }
    Ok(result)
}

/// The host the running script serves; `None` outside every VM entry.
#[inline]
pub fn current<'a>() -> Option<&'a Host<'a>> {
    let host = CURRENT.load(Ordering::Relaxed) as *const Host<'a>;
    // SAFETY: `enter` stores a host that lives on its caller's stack for the
    // whole VM call and removes it afterwards; Ruby methods only run inside.
    unsafe { host.as_ref() }
}

/// The current host if its context is one of `allowed`; otherwise the
/// exception a misplaced call raises.
pub fn require<'a>(allowed: Context) -> Result<&'a Host<'a>, RubyError> {
    match current() {
        Some(host) if host.context().within(allowed) => Ok(host),
        Some(host) => Err(RubyError::runtime(format!("API disabled in the context of {}", host.context().name()))),
        None => Err(RubyError::runtime("API disabled outside a script run")),
    }
}

/// As [`require`], with the method's own error for a misplaced call.
pub fn require_or<'a>(allowed: Context, misplaced: impl FnOnce() -> RubyError) -> Result<&'a Host<'a>, RubyError> {
    match current() {
        Some(host) if host.context().within(allowed) => Ok(host),
        _ => Err(misplaced()),
    }
}

/// The request the running script serves, with its state.
#[inline]
pub fn current_request<'a>() -> Option<&'a RequestHost> {
    current().and_then(Host::request)
}

/// The cycle the running script serves (the running cycle outside any
/// VM entry): what the API uses instead of reading `ngx_cycle`.
pub fn cycle() -> *mut ngx_cycle_t {
    // SAFETY: ngx_cycle is nginx's running cycle.
    current().map_or_else(|| unsafe { ngx_cycle }, Host::cycle)
}

/// The raw request of the running script (for code that only needs `r`).
pub fn current_request_ptr() -> Option<*mut ngx_http_request_t> {
    current_request().map(RequestHost::as_ptr)
}
