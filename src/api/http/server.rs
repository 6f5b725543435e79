//! `Nginx::Server`: the document root of the current location.
//! (`add_listener` comes with `mruby_server_context_handler_code`.)

use mruby_sys::*;

use super::connection::variable_value;
use crate::api::ARGS_ANY;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyResult};

fn document_root(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"document_root", args)
}
fn realpath_root(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    variable_value(mrb, b"realpath_root", args)
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let server = mrb.define_class_under(nginx, c"Server");
    mrb.define_method(server, c"document_root", ruby_fn!(document_root), ARGS_ANY);
    mrb.define_method(server, c"path", ruby_fn!(realpath_root), ARGS_ANY);
    mrb.define_method(server, c"realpath_root", ruby_fn!(realpath_root), ARGS_ANY);
}
