//! `Nginx::Connection`: client and server addresses, as Strings.

use mruby_sys::*;

use super::var::get_variable;
use crate::api::{arity, with_request, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyResult};

/// Reads one nginx variable as a String (nil when unavailable).
pub fn variable_value(mrb: Mrb, name: &[u8], args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let value = with_request(|r, _| get_variable(r, name))?;
    Ok(value.map(|v| mrb.str(v)).unwrap_or_else(|| mrb.nil()))
}

fn remote_ip(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"remote_addr", args)
}
fn remote_port(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"remote_port", args)
}
fn local_ip(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"server_addr", args)
}
fn local_port(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"server_port", args)
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let connection = mrb.define_class_under(nginx, c"Connection");
    mrb.define_method(connection, c"remote_ip", ruby_fn!(remote_ip), ARGS_ANY);
    mrb.define_method(connection, c"remote_port", ruby_fn!(remote_port), ARGS_ANY);
    mrb.define_method(connection, c"local_ip", ruby_fn!(local_ip), ARGS_ANY);
    mrb.define_method(connection, c"local_port", ruby_fn!(local_port), ARGS_ANY);
}
