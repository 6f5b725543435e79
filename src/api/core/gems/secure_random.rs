//! `SecureRandom`: random bytes from the OS (the getrandom crate) and the
//! usual encodings of them. `random_number` with a Range is in
//! `mrblib/secure_random.rb`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use mruby_sys::*;

use super::{RubyError, RubyResult};
use crate::api::{arg_int, arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// Size used when none is given.
const DEFAULT_SIZE: usize = 16;
/// Largest request served, so a script cannot make the worker allocate
/// without bound.
const MAX_SIZE: usize = 64 << 20;

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_fill(buf: &mut [u8]) -> Result<(), RubyError> {
    getrandom::getrandom(buf).map_err(|err| RubyError::new("RuntimeError", format!("no random device: {err}")))
}

fn random_vec(len: usize) -> Result<Vec<u8>, RubyError> {
    let mut buf = vec![0; len];
    random_fill(&mut buf)?;
    Ok(buf)
}

fn random_u64() -> Result<u64, RubyError> {
    let mut buf = [0; 8];
    random_fill(&mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

/// The optional size argument (nil or absent: 16).
fn size_arg(mrb: Mrb, args: &[mrb_value]) -> Result<usize, RubyError> {
    let size = match args.first() {
        Some(v) if !mrb.is_nil(*v) => arg_int(mrb, *v, "size")?,
        _ => return Ok(DEFAULT_SIZE),
    };
    if size < 0 {
        return Err(RubyError::new("ArgumentError", "negative string size (or size too big)"));
    }
    usize::try_from(size)
        .ok()
        .filter(|size| *size <= MAX_SIZE)
        .ok_or_else(|| RubyError::new("ArgumentError", format!("size {size} too big (at most {MAX_SIZE})")))
}

/// `SecureRandom.random_bytes(n = 16)` (also `bytes`).
fn random_bytes(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    Ok(mrb.str(&random_vec(size_arg(mrb, args)?)?))
}

/// `SecureRandom.hex(n = 16)`: `2n` lowercase hex digits.
fn hex(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    Ok(mrb.str(hex::encode(random_vec(size_arg(mrb, args)?)?).as_bytes()))
}

/// `SecureRandom.base64(n = 16)`: `n` random bytes, base64 with padding.
fn base64(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    Ok(mrb.str(STANDARD.encode(random_vec(size_arg(mrb, args)?)?).as_bytes()))
}

/// `SecureRandom.urlsafe_base64(n = 16, padding = false)`.
fn urlsafe_base64(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 2)?;
    let bytes = random_vec(size_arg(mrb, args)?)?;
    let padding = args.get(1).is_some_and(|v| mrb.truthy(*v));
    let text = if padding { URL_SAFE.encode(bytes) } else { URL_SAFE_NO_PAD.encode(bytes) };
    Ok(mrb.str(text.as_bytes()))
}

/// `SecureRandom.uuid`: a version 4 UUID.
fn uuid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let mut bytes = [0u8; 16];
    random_fill(&mut bytes)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode(bytes);
    let text = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    Ok(mrb.str(text.as_bytes()))
}

/// A uniform integer in `0..bound` (rejecting the values that would bias
/// the modulo).
fn below(bound: u64) -> Result<u64, RubyError> {
    let biased = bound.wrapping_neg() % bound;
    loop {
        let x = random_u64()?;
        if x >= biased {
            return Ok(x % bound);
        }
    }
}

/// A uniform Float in `[0, 1)` with 53 random bits.
fn unit_float() -> Result<f64, RubyError> {
    Ok((random_u64()? >> 11) as f64 / (1u64 << 53) as f64)
}

/// `SecureRandom.random_number(n = 0)` (and `rand`): Integer `n > 0` →
/// `0...n`; Float `n > 0` → `[0, n)`; an Integer Range → a member of it; a
/// numeric Range → a Float in it; 0 or nil → a Float in `[0, 1)`.
fn random_number(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    let limit = args.first().copied().unwrap_or_else(|| mrb.nil());
    if mrb.class_name(limit) == "Range" {
        return random_in_range(mrb, limit);
    }
    if let Some(n) = mrb.to_int(limit).filter(|n| *n > 0) {
        return Ok(mrb.int(below(n as u64)? as i64));
    }
    if let Some(f) = mrb.to_float(limit).filter(|f| *f > 0.0 && f.is_finite()) {
        return Ok(mrb.float(unit_float()? * f));
    }
    if !mrb.is_nil(limit) && mrb.to_int(limit).is_none() && mrb.to_float(limit).is_none() {
        return Err(RubyError::new("ArgumentError", format!("invalid argument - {}", mrb.inspect(limit))));
    }
    Ok(mrb.float(unit_float()?))
}

/// A member of an Integer Range, or a Float within a numeric one.
fn random_in_range(mrb: Mrb, range: mrb_value) -> RubyResult {
    let invalid = || RubyError::new("ArgumentError", format!("invalid argument - {}", mrb.inspect(range)));
    let first = mrb.call(range, "begin", &[]).map_err(RubyError::reraise)?;
    let last = mrb.call(range, "end", &[]).map_err(RubyError::reraise)?;
    let exclusive = mrb.truthy(mrb.call(range, "exclude_end?", &[]).map_err(RubyError::reraise)?);
    if let (Some(a), Some(b)) = (mrb.to_int(first), mrb.to_int(last)) {
        let span = b.checked_sub(a).and_then(|d| d.checked_add(i64::from(!exclusive))).filter(|s| *s > 0);
        let span = span.ok_or_else(invalid)?;
        return Ok(mrb.int(a + below(span as u64)? as i64));
    }
    let number = |v| mrb.to_int(v).map(|i| i as f64).or_else(|| mrb.to_float(v));
    match (number(first), number(last)) {
        (Some(a), Some(b)) if b > a && (b - a).is_finite() => Ok(mrb.float(a + unit_float()? * (b - a))),
        _ => Err(invalid()),
    }
}

/// `SecureRandom.alphanumeric(n = 16)`: `n` characters of `A-Za-z0-9`.
fn alphanumeric(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    let len = size_arg(mrb, args)?;
    let mut out = Vec::with_capacity(len);
    // bytes below 248 (= 4 * 62) map evenly onto the alphabet
    let mut pool = [0u8; 64];
    while out.len() < len {
        random_fill(&mut pool)?;
        let fresh = pool.iter().filter(|b| **b < 248).map(|b| ALPHANUMERIC[usize::from(*b) % 62]);
        out.extend(fresh.take(len - out.len()));
    }
    Ok(mrb.str(&out))
}

pub fn init(mrb: Mrb) {
    let secure_random = mrb.define_module(c"SecureRandom");
    mrb.define_module_function(secure_random, c"random_bytes", ruby_fn!(random_bytes), ARGS_ANY);
    mrb.define_module_function(secure_random, c"bytes", ruby_fn!(random_bytes), ARGS_ANY);
    mrb.define_module_function(secure_random, c"hex", ruby_fn!(hex), ARGS_ANY);
    mrb.define_module_function(secure_random, c"base64", ruby_fn!(base64), ARGS_ANY);
    mrb.define_module_function(secure_random, c"urlsafe_base64", ruby_fn!(urlsafe_base64), ARGS_ANY);
    mrb.define_module_function(secure_random, c"uuid", ruby_fn!(uuid), ARGS_ANY);
    mrb.define_module_function(secure_random, c"alphanumeric", ruby_fn!(alphanumeric), ARGS_ANY);
    mrb.define_module_function(secure_random, c"random_number", ruby_fn!(random_number), ARGS_ANY);
    mrb.define_module_function(secure_random, c"rand", ruby_fn!(random_number), ARGS_ANY);
}
