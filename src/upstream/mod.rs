//! Upstreams: `mruby_upstream_keepalive N` (nginx's own `keepalive N`) and
//! resizing the keepalive pool at run time for
//! `Nginx::Upstream#keepalive_cache=` (`keepalive.rs`).
//!
//! May import: `ngx_util` only (the Ruby side, `api/http/upstream.rs`,
//! calls in).

pub mod keepalive;
