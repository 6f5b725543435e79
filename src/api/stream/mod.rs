//! The Ruby API of the stream VM: `Nginx::Stream` (`nginx_stream.rs`),
//! `Nginx::Stream::Connection` (`connection.rs`), `Nginx::Stream::Async`
//! (`async_.rs`), plus the Ruby library every VM has. None of the HTTP API
//! is defined here: a stream VM has no requests.

pub mod async_;
pub mod connection;
pub mod nginx_stream;

use crate::host::{self, Host, StreamSession};
use crate::vm::{Mrb, RubyError};

/// Defines the stream API in a fresh VM (the stream module's `Vm::open`).
pub fn install(mrb: Mrb) -> Result<(), String> {
    let arena = mrb.arena_save();
    nginx_stream::init(mrb);
    connection::init(mrb);
    async_::init(mrb);
    mrb.arena_restore(arena);
    super::install_library(mrb)
}

/// The session the running script serves; RuntimeError elsewhere.
pub(crate) fn current_session<'a>(what: &str) -> Result<&'a StreamSession, RubyError> {
    match host::current() {
        Some(Host::Stream(session)) => Ok(session),
        _ => Err(RubyError::runtime(format!("{what} can only be used in mruby_stream or mruby_stream_code"))),
    }
}
