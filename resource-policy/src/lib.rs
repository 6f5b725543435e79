//! The resource-control rules of ngx-mruby-rs (issue 10) as plain Rust:
//! what the `resource_*` directives say ([`class`], [`checker`],
//! [`confine`]), the units they use ([`units`]), and the auto-confine
//! decision over per-host usage. The nginx module parses its directives
//! with this crate and keeps the state in a shared zone; nothing here
//! touches nginx, cgroupfs or a clock, so every rule has a unit test.

pub mod cgroup_files;
pub mod checker;
pub mod class;
pub mod confine;
pub mod hosts;
pub mod units;
