//! `Nginx` response methods of a request: body output (`rputs`, `echo`),
//! status (`return`), redirects. They write to the request host's state;
//! the phase sends it when the script is done.

use mruby_sys::*;
use ngx::ffi::*;

use crate::api::{arg_bytes, arg_int, arity, to_s_bytes, with_request, ARGS_ANY};
use crate::ngx_util::pool_str;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

fn out_of_memory() -> RubyError {
    RubyError::runtime("out of memory")
}

/// `Nginx.rputs(obj)`: appends `obj.to_s` to the response body.
fn rputs(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    if mrb.is_nil(args[0]) {
        return Ok(mrb.top_self());
    }
    // a String is appended straight from its buffer; nothing runs in between
    if let Some(bytes) = mrb.str_bytes(args[0]) {
        append(bytes)?;
    } else {
        append(&to_s_bytes(mrb, args[0])?)?;
    }
    Ok(mrb.top_self())
}

/// `Nginx.echo(obj)`: `rputs(obj.to_s + "\n")`.
fn echo(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let mut text = to_s_bytes(mrb, args[0])?;
    text.push(b'\n');
    append(&text)?;
    Ok(mrb.top_self())
}

fn append(bytes: &[u8]) -> Result<(), RubyError> {
    with_request(|r, ctx| ctx.append_output(r.pool, bytes))?.map_err(|()| out_of_memory())
}

/// `Nginx.return(status)` (also `send_header`, `status_code=`).
fn return_status(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let status = arg_int(mrb, args[0], "status")?;
    with_request(|r, ctx| {
        ctx.status.set(status as ngx_int_t);
        ctx.status_set.set(true);
        if status >= 100 {
            r.headers_out.status = status as ngx_uint_t;
        }
    })?;
    Ok(mrb.nil())
}

/// `Nginx.redirect(uri, status = 302)`: external with a scheme, else internal.
fn redirect(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let uri = arg_bytes(mrb, args[0], "uri")?.to_vec();
    if uri.is_empty() {
        return Ok(mrb.nil());
    }
    let status = match args.get(1) {
        Some(v) => arg_int(mrb, *v, "status")?,
        None => NGX_HTTP_MOVED_TEMPORARILY as i64,
    };
    let external = [&b"http://"[..], b"https://", b"$scheme"].iter().any(|prefix| uri.starts_with(prefix));
    with_request(|r, ctx| {
        if external {
            super::headers::set_location(r, &uri)?;
            ctx.status.set(status as ngx_int_t);
            ctx.status_set.set(true);
            r.headers_out.status = status as ngx_uint_t;
        } else {
            ctx.redirect_uri.set(pool_str(r.pool, &uri).ok_or_else(out_of_memory)?);
        }
        Ok(())
    })??;
    Ok(mrb.nil())
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    mrb.define_class_method(nginx, c"rputs", ruby_fn!(rputs), ARGS_ANY);
    mrb.define_class_method(nginx, c"echo", ruby_fn!(echo), ARGS_ANY);
    mrb.define_class_method(nginx, c"return", ruby_fn!(return_status), ARGS_ANY);
    mrb.define_class_method(nginx, c"send_header", ruby_fn!(return_status), ARGS_ANY);
    mrb.define_class_method(nginx, c"status_code=", ruby_fn!(return_status), ARGS_ANY);
    mrb.define_class_method(nginx, c"redirect", ruby_fn!(redirect), ARGS_ANY);
}
