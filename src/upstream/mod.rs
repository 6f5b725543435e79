//! Upstreams: `mruby_upstream_keepalive N` (nginx's own `keepalive N`) and
//! resizing the keepalive pool at run time for
//! `Nginx::Upstream#keepalive_cache=` (`keepalive.rs`); stream upstreams
//! by name and server addresses for `Nginx::Stream::Connection` (`stream.rs`).
//!
//! May import: `ngx_util` only (the Ruby side, `api/http/upstream.rs`,
//! calls in).

pub mod keepalive;
pub mod stream;
