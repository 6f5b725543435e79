//! The server-configuration host: a `server{}` block being parsed, while its
//! `mruby_server_context_handler_code` runs. What the script may do to the
//! server (add a listening socket) is done by `conf/listen.rs` through
//! [`ListenerTarget`]; the host only carries it to the Ruby API.

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
}

impl<'a> ServerConfigHost<'a> {
    pub fn new(target: &'a dyn ListenerTarget) -> ServerConfigHost<'a> {
        ServerConfigHost { target }
    }

    /// Adds a listening socket to the server being parsed.
    pub fn add_listener(&self, spec: &ListenSpec) -> Result<(), RubyError> {
        self.target.add_listener(spec)
    }
}
