//! `JSON`: parse and generate through serde_json. `Object#to_json` is in
//! `mrblib/json.rb`.

use core::ffi::{c_int, c_void};

use mruby_sys::*;
use serde_json::{Map, Number, Value};

use super::{define_class_under, reraise, str_arg, RubyError, RubyResult};
use crate::api::{arity, keyword_hash, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// CRuby's default `max_nesting` for generate.
const MAX_NESTING: usize = 100;

/// `JSON.parse(source, symbolize_names: false)` (the options as keywords or
/// as a Hash): objects become Hashes (String or Symbol keys), integers
/// beyond i64 become Floats; other options are accepted and ignored.
fn parse(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let source = str_arg(mrb, args[0])?;
    let options = match args.get(1) {
        Some(options) if mrb.is_nil(*options) => None,
        Some(options) if mrb.is_hash(*options) => Some(*options),
        Some(other) => {
            return Err(RubyError::type_error(format!(
                "no implicit conversion of {} into Hash",
                mrb.class_name(*other)
            )))
        }
        None => keyword_hash(mrb),
    };
    let symbolize_names = options.is_some_and(|hash| {
        // SAFETY: live VM; hash is a Hash; fetch does not run a default proc.
        let value = unsafe { mrb_hash_fetch(mrb.as_ptr(), hash, mrb.sym_value("symbolize_names"), mrb.nil()) };
        mrb.truthy(value)
    });
    let value: Value =
        serde_json::from_slice(source).map_err(|err| RubyError::new("JSON::ParserError", err.to_string()))?;
    Ok(to_ruby(mrb, &value, symbolize_names))
}

/// `JSON.load(source)`: `parse`, and nil for nil.
fn load(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    if mrb.is_nil(args[0]) {
        return Ok(mrb.nil());
    }
    parse(mrb, self_, &args[..1])
}

pub(crate) fn to_ruby(mrb: Mrb, value: &Value, symbolize_names: bool) -> mrb_value {
    match value {
        Value::Null => mrb.nil(),
        Value::Bool(b) => mrb.bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => mrb.int(i),
            None => mrb.float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => mrb.str(s.as_bytes()),
        Value::Array(items) => {
            let array = mrb.ary_new();
            let arena = mrb.arena_save();
            for item in items {
                let element = to_ruby(mrb, item, symbolize_names);
                mrb.ary_push(array, element);
                mrb.arena_restore(arena);
            }
            array
        }
        Value::Object(members) => {
            let hash = mrb.hash_new();
            let arena = mrb.arena_save();
            for (name, member) in members {
                // Symbols are never collected: only on request (symbolize_names).
                let key = if symbolize_names { mrb.sym_value(name) } else { mrb.str(name.as_bytes()) };
                let element = to_ruby(mrb, member, symbolize_names);
                mrb.hash_set(hash, key, element);
                mrb.arena_restore(arena);
            }
            hash
        }
    }
}

/// The object `generate` was given: its first argument, or a braceless
/// Hash (`JSON.generate("a" => 1)`), which arrives as keywords. Options
/// after the object are accepted and ignored.
fn object_arg(mrb: Mrb, args: &[mrb_value]) -> Result<mrb_value, RubyError> {
    match args.first() {
        Some(object) => {
            arity(args, 1, 2)?;
            Ok(*object)
        }
        None => {
            keyword_hash(mrb).ok_or_else(|| RubyError::argument("wrong number of arguments (given 0, expected 1..2)"))
        }
    }
}

/// `JSON.generate(obj)` (also `JSON.dump`): compact JSON text.
fn generate(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    let value = to_json_value(mrb, object_arg(mrb, args)?, 0)?;
    let text = serde_json::to_vec(&value).map_err(|err| RubyError::new("JSON::GeneratorError", err.to_string()))?;
    Ok(mrb.str(&text))
}

/// `JSON.pretty_generate(obj)`: two-space indented JSON text.
fn pretty_generate(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    let value = to_json_value(mrb, object_arg(mrb, args)?, 0)?;
    let text =
        serde_json::to_vec_pretty(&value).map_err(|err| RubyError::new("JSON::GeneratorError", err.to_string()))?;
    Ok(mrb.str(&text))
}

/// A Ruby value as JSON: Hash, Array, String, Symbol, Integer, Float,
/// true/false/nil natively; anything else as its `to_s`.
fn to_json_value(mrb: Mrb, v: mrb_value, depth: usize) -> Result<Value, RubyError> {
    if depth > MAX_NESTING {
        return Err(RubyError::new("JSON::NestingError", format!("nesting of {depth} is too deep")));
    }
    if mrb.is_nil(v) {
        return Ok(Value::Null);
    }
    // SAFETY: reads the tag of a value.
    if unsafe { mrbsys_true_p(v) } {
        return Ok(Value::Bool(true));
    }
    // SAFETY: reads the tag of a value.
    if unsafe { mrbsys_false_p(v) } {
        return Ok(Value::Bool(false));
    }
    if let Some(i) = mrb.to_int(v) {
        return Ok(Value::Number(i.into()));
    }
    if let Some(f) = mrb.to_float(v) {
        return Number::from_f64(f).map(Value::Number).ok_or_else(|| {
            let name = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            RubyError::new("JSON::GeneratorError", format!("{name} not allowed in JSON"))
        });
    }
    if mrb.is_array(v) {
        let mut items = Vec::with_capacity(mrb.ary_len(v));
        // the length is read again each time: to_s of an element may change it
        let arena = mrb.arena_save();
        let mut i = 0;
        while i < mrb.ary_len(v) {
            items.push(to_json_value(mrb, mrb.ary_ref(v, i), depth + 1)?);
            mrb.arena_restore(arena);
            i += 1;
        }
        return Ok(Value::Array(items));
    }
    if mrb.is_hash(v) {
        let pairs = hash_pairs(mrb, v);
        let mut members = Map::new();
        let arena = mrb.arena_save();
        for i in (0..mrb.ary_len(pairs)).step_by(2) {
            let key = json_string(mrb, mrb.ary_ref(pairs, i))?;
            members.insert(key, to_json_value(mrb, mrb.ary_ref(pairs, i + 1), depth + 1)?);
            mrb.arena_restore(arena);
        }
        return Ok(Value::Object(members));
    }
    json_string(mrb, v).map(Value::String)
}

/// A String, a Symbol's name, or `to_s` of anything else, as UTF-8.
fn json_string(mrb: Mrb, v: mrb_value) -> Result<String, RubyError> {
    let bytes = match mrb.to_sym(v) {
        Some(sym) => mrb.sym_name(sym).to_vec(),
        None => {
            let s = mrb.to_s(v).map_err(reraise)?;
            mrb.str_bytes(s).unwrap_or_default().to_vec()
        }
    };
    String::from_utf8(bytes)
        .map_err(|_| RubyError::new("JSON::GeneratorError", "source sequence is illegal/malformed utf-8"))
}

/// A Hash's keys and values as a flat Array `[k1, v1, k2, v2...]`, read
/// without calling Ruby (no `#hash`), and kept alive by the GC arena.
fn hash_pairs(mrb: Mrb, hash: mrb_value) -> mrb_value {
    unsafe extern "C" fn push_pair(mrb: *mut mrb_state, key: mrb_value, val: mrb_value, data: *mut c_void) -> c_int {
        // SAFETY: data is the Array below; pushing does not touch the hash.
        unsafe {
            let pairs = *data.cast::<mrb_value>();
            mrb_ary_push(mrb, pairs, key);
            mrb_ary_push(mrb, pairs, val);
        }
        0
    }
    let mut pairs = mrb.ary_new();
    // SAFETY: live VM; hash is a Hash (checked by the caller); the callback
    // only pushes onto `pairs`.
    unsafe {
        mrb_hash_foreach(mrb.as_ptr(), mrbsys_ptr(hash).cast(), Some(push_pair), (&mut pairs as *mut mrb_value).cast());
    }
    pairs
}

pub fn init(mrb: Mrb) {
    let json = mrb.define_module(c"JSON");
    // SAFETY: live VM; StandardError always exists.
    let standard_error = unsafe { mrb_class_get(mrb.as_ptr(), c"StandardError".as_ptr()) };
    let json_error = define_class_under(mrb, json, c"JSONError", standard_error);
    let parser_error = define_class_under(mrb, json, c"ParserError", json_error);
    define_class_under(mrb, json, c"GeneratorError", json_error);
    define_class_under(mrb, json, c"NestingError", parser_error);
    mrb.define_module_function(json, c"parse", ruby_fn!(parse), ARGS_ANY);
    mrb.define_module_function(json, c"load", ruby_fn!(load), ARGS_ANY);
    mrb.define_module_function(json, c"generate", ruby_fn!(generate), ARGS_ANY);
    mrb.define_module_function(json, c"dump", ruby_fn!(generate), ARGS_ANY);
    mrb.define_module_function(json, c"pretty_generate", ruby_fn!(pretty_generate), ARGS_ANY);
}
