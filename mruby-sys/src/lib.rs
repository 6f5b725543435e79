//! Raw bindings to mruby 3.3.0, built by `build.rs` from Debian's source package and linked
//! statically. The safe layer lives in the module's `src/vm/`.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all, rustdoc::all, unnecessary_transmutes)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(test)]
mod tests;
