//! The server-configuration host: a `server{}` block being parsed, while its
//! `mruby_server_context_handler_code` runs. What the script may do to the
//! server (add a listening socket) is done by `conf/listen.rs` through
//! [`ListenerTarget`]; the host only carries it to the Ruby API.

use ngx::ffi::ngx_cycle_t;

use crate::vm::RubyError;

/// A listening socket `Nginx::Server#add_listener` asks for.
pub struct ListenSpec {
    /// `host:port`, `port` or `unix:path`, as in `listen`.
    pub address: Vec<u8>,
    pub ssl: bool,
    pub http2: bool,
}

/// The server block being parsed, as something that can gain listeners.
pub trait ListenerTarget {
    fn add_listener(&self, spec: &ListenSpec) -> Result<(), RubyError>;
}

/// The host installed while a server context script runs.
pub struct ServerConfigHost<'a> {
    target: &'a dyn ListenerTarget,
    cycle: *mut ngx_cycle_t,
}

impl<'a> ServerConfigHost<'a> {
    /// A host for the server block `target`, in the cycle being configured.
    pub fn new(target: &'a dyn ListenerTarget, cycle: *mut ngx_cycle_t) -> ServerConfigHost<'a> {
        ServerConfigHost { target, cycle }
    }

    /// The cycle being configured.
    pub fn cycle(&self) -> *mut ngx_cycle_t {
        self.cycle
    }

    /// Adds a listening socket to the server being parsed.
    pub fn add_listener(&self, spec: &ListenSpec) -> Result<(), RubyError> {
        self.target.add_listener(spec)
    }
}
