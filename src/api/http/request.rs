//! `Nginx::Request`: the current request's line, URI, arguments and method.
//! Objects hold no data; every call reads the request being served.

use mruby_sys::*;
use ngx::ffi::*;

use crate::api::{arity, to_s_bytes, with_request, ARGS_ANY};
use crate::ngx_util::{pool_str, str_bytes};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// A request field readable and writable from Ruby.
#[derive(Clone, Copy)]
enum Field {
    Uri,
    Args,
    Method,
    UnparsedUri,
    RequestLine,
    Protocol,
    ContentType,
}

fn field(r: &mut ngx_http_request_t, which: Field) -> &mut ngx_str_t {
    match which {
        Field::Uri => &mut r.uri,
        Field::Args => &mut r.args,
        Field::Method => &mut r.method_name,
        Field::UnparsedUri => &mut r.unparsed_uri,
        Field::RequestLine => &mut r.request_line,
        Field::Protocol => &mut r.http_protocol,
        Field::ContentType => &mut r.headers_out.content_type,
    }
}

fn read(mrb: Mrb, which: Field, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let value = with_request(|r, _| str_bytes(field(r, which)).to_vec())?;
    Ok(mrb.str(&value))
}

/// Setters copy the value into the request pool; nil is a no-op.
fn write(mrb: Mrb, which: Field, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    if mrb.is_nil(args[0]) {
        return Ok(args[0]);
    }
    let value = to_s_bytes(mrb, args[0])?;
    if matches!(which, Field::ContentType) && value.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(RubyError::argument("header value must not contain CR, LF or NUL"));
    }
    with_request(|r, _| {
        let stored = pool_str(r.pool, &value).ok_or_else(|| RubyError::runtime("out of memory"))?;
        *field(r, which) = stored;
        if matches!(which, Field::ContentType) {
            r.headers_out.content_type_len = stored.len;
        }
        Ok(())
    })??;
    Ok(args[0])
}

macro_rules! accessors {
    ($($getter:ident, $setter:ident => $field:expr;)*) => {
        $(
            fn $getter(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
                read(mrb, $field, args)
            }
            fn $setter(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
                write(mrb, $field, args)
            }
        )*
    };
}

accessors! {
    uri, set_uri => Field::Uri;
    args_get, set_args => Field::Args;
    method, set_method => Field::Method;
    unparsed_uri, set_unparsed_uri => Field::UnparsedUri;
    request_line, set_request_line => Field::RequestLine;
    protocol, set_protocol => Field::Protocol;
    content_type, set_content_type => Field::ContentType;
}

/// `sub_request?`: whether this is a subrequest.
fn is_sub_request(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let is_sub = with_request(|r, _| {
        let this: *mut ngx_http_request_t = r;
        this != r.main
    })?;
    Ok(mrb.bool(is_sub))
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let request = mrb.define_class_under(nginx, c"Request");
    let table: &[(&core::ffi::CStr, mrb_func_t)] = &[
        (c"uri", ruby_fn!(uri)),
        (c"uri=", ruby_fn!(set_uri)),
        (c"args", ruby_fn!(args_get)),
        (c"args=", ruby_fn!(set_args)),
        (c"method", ruby_fn!(method)),
        (c"method=", ruby_fn!(set_method)),
        (c"unparsed_uri", ruby_fn!(unparsed_uri)),
        (c"unparsed_uri=", ruby_fn!(set_unparsed_uri)),
        (c"request_line", ruby_fn!(request_line)),
        (c"request_line=", ruby_fn!(set_request_line)),
        (c"protocol", ruby_fn!(protocol)),
        (c"protocol=", ruby_fn!(set_protocol)),
        (c"content_type", ruby_fn!(content_type)),
        (c"content_type=", ruby_fn!(set_content_type)),
        (c"sub_request?", ruby_fn!(is_sub_request)),
        (c"get_body", ruby_fn!(get_body)),
    ];
    for (name, func) in table {
        mrb.define_method(request, name, *func, ARGS_ANY);
    }
}

/// `get_body`: the request body (memory or temp file). It is there when
/// `mruby_enable_read_request_body on` applies (or another module read it).
fn get_body(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let (body, method) = with_request(|r, _| (crate::host::body::body_bytes(r), str_bytes(&r.method_name).to_vec()))?;
    match body {
        Some(Ok(body)) => Ok(mrb.str(&body)),
        Some(Err(message)) => Err(RubyError::runtime(message)),
        None => {
            if method != b"POST" && method != b"PUT" {
                return Err(RubyError::runtime(
                    "ngx_mrb_read_request_body can't read when r->method is neither POST nor PUT",
                ));
            }
            Ok(mrb.nil())
        }
    }
}
