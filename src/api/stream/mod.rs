//! The Ruby API of the stream VM: `Nginx::Stream` (`nginx_stream.rs`),
//! `Nginx::Stream::Connection` (`connection.rs`), `Nginx::Stream::Async`
//! (`async_.rs`), plus the Ruby library every VM has. None of the HTTP API
//! is defined here: a stream VM has no requests.

pub mod async_;
pub mod connection;
pub mod nginx_stream;

use crate::vm::{Mrb, RubyError};

/// Ruby halves of the stream API (`mrblib/`).
const STREAM_MRBLIB: &[(&str, &str)] = &[("mrblib/stream.rb", include_str!("../../../mrblib/stream.rb"))];

/// Defines the stream API in a fresh VM (the stream module's `Vm::open_with`).
pub fn install(mrb: Mrb) -> Result<(), String> {
    let arena = mrb.arena_save();
    nginx_stream::init(mrb);
    connection::init(mrb);
    async_::init(mrb);
    mrb.arena_restore(arena);
    super::define_library(mrb)?;
    super::load_mrblib(mrb, STREAM_MRBLIB)
}

/// The session the running script serves; RuntimeError elsewhere.
pub(crate) fn current_session<'a>(what: &str) -> Result<&'a crate::stream::session::StreamSession, RubyError> {
    crate::stream::session::current()
        .ok_or_else(|| RubyError::runtime(format!("{what} can only be used in mruby_stream or mruby_stream_code")))
}
