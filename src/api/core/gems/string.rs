//! The `String` methods that take a Regexp: `=~`, `match`, `match?`,
//! `sub`, `gsub`, `sub!`, `gsub!`, `scan`, and the Regexp forms of `split`,
//! `index`, `[]` and `slice` (other arguments go to mruby's own C function
//! for the method, read once from the String class before it is
//! redefined, so no alias of it is left for scripts to call).
//!
//! A String pattern is taken literally by `sub`, `gsub` and `scan`, and as a
//! pattern by `match`/`match?`, as in CRuby. Offsets are byte offsets.
//! Blocks run with `$~` set to the match they are given.

use std::rc::Rc;
use std::sync::OnceLock;

use mruby_sys::*;

use super::match_data::{self, MatchState, MATCH_DATA};
use super::regexp::{
    compiled_of, match_states, matches, pattern_arg, replace_template, search_and_set, split_ranges, Compiled, REGEXP,
};
use super::{block_arg, reraise, str_arg, yield_block, RubyError, RubyResult};
use crate::api::{arity, call_method, keyword_hash, method_call, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// mruby's C functions for the methods whose non-Regexp forms stay its own.
/// They are the same in every VM of the process (static functions of
/// libmruby), so the first VM's lookup serves all.
struct CoreMethods {
    split: mrb_func_t,
    index: mrb_func_t,
    aref: mrb_func_t,
}

static CORE_METHODS: OnceLock<CoreMethods> = OnceLock::new();

/// Whether the running method's first argument is a Regexp.
fn first_arg_is_regexp(mrb: *mut mrb_state) -> bool {
    method_call(mrb).is_some_and(|(mrb, args)| args.first().is_some_and(|arg| REGEXP.get(mrb, *arg).is_some()))
}

fn core_method_missing(_mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Err(RubyError::new("NotImplementedError", "this mruby has no C implementation of this String method"))
}

/// An entry point that runs `$method` for a Regexp first argument and
/// mruby's own C function otherwise. The core function is called from this
/// frame, which holds no Rust values, so its exceptions unwind nothing.
macro_rules! regexp_or_core {
    ($entry:ident, $core:ident, $method:path) => {
        unsafe extern "C" fn $entry(mrb: *mut mrb_state, self_: mrb_value) -> mrb_value {
            if first_arg_is_regexp(mrb) {
                return call_method(mrb, self_, $method);
            }
            match CORE_METHODS.get().and_then(|core| core.$core) {
                // SAFETY: mruby's C function for this very method, called in
                // this method's call frame, where it reads its arguments.
                Some(core) => unsafe { core(mrb, self_) },
                None => call_method(mrb, self_, core_method_missing),
            }
        }
    };
}

regexp_or_core!(split_entry, split, split);
regexp_or_core!(index_entry, index, index);
regexp_or_core!(aref_entry, aref, aref);

/// What replaces each match in `sub`/`gsub`.
enum Replacement {
    /// A String with back-references.
    Template(Vec<u8>),
    /// A Hash from matched text to replacement.
    Table(mrb_value),
    /// A block given the matched text (with `$~` set).
    Block(mrb_value),
}

/// Sets `$~` (and `$1`...) to the match `spans` of `subject`, or to nil.
fn set_last_match(mrb: Mrb, last: Option<MatchState>) -> Result<(), RubyError> {
    let md = match last {
        Some(state) => match_data::wrap(mrb, state)?,
        None => mrb.nil(),
    };
    match_data::set_last_match(mrb, md);
    Ok(())
}

/// The receiver's bytes, copied: blocks may change the String meanwhile.
fn own_text(mrb: Mrb, self_: mrb_value) -> Result<Rc<[u8]>, RubyError> {
    Ok(Rc::from(str_arg(mrb, self_)?))
}

/// The arguments of `sub`/`gsub`: the pattern and the replacement, if any
/// (a braceless Hash, `gsub(/./, "a" => "b")`, arrives as keywords).
fn substitution_args(mrb: Mrb, args: &[mrb_value]) -> Result<(mrb_value, Option<mrb_value>), RubyError> {
    let keywords = keyword_hash(mrb);
    arity(args, 1, if keywords.is_some() { 1 } else { 2 })?;
    Ok((args[0], args.get(1).copied().or(keywords)))
}

/// `sub`/`gsub` of `args` on `self_`: the new text, and whether anything
/// matched. Sets `$~` to the last match.
fn substitute(mrb: Mrb, self_: mrb_value, args: &[mrb_value], global: bool) -> Result<(Vec<u8>, bool), RubyError> {
    let (pattern, replacement) = substitution_args(mrb, args)?;
    let compiled = pattern_arg(mrb, pattern, true)?;
    let subject = own_text(mrb, self_)?;
    let replacement = match replacement.as_ref() {
        Some(table) if mrb.is_hash(*table) => Replacement::Table(*table),
        Some(template) => Replacement::Template(str_arg(mrb, *template)?.to_vec()),
        None => Replacement::Block(block_arg(mrb)),
    };
    if let Replacement::Template(template) = &replacement {
        let (out, last) = replace_template(&compiled, &subject, template, global)?;
        let matched = last.is_some();
        set_last_match(mrb, last)?;
        return Ok((out, matched));
    }
    let found = match_states(&compiled, &subject, if global { None } else { Some(1) })?;
    let matched = !found.is_empty();
    let mut out = Vec::with_capacity(subject.len());
    let mut copied = 0;
    let mut last_spans = None;
    for state in found {
        let Some((begin, end)) = state.spans[0] else { continue };
        out.extend_from_slice(&subject[copied..begin]);
        last_spans = Some(state.spans.clone());
        let arena = mrb.arena_save();
        let text = mrb.str(&subject[begin..end]);
        let value = match &replacement {
            Replacement::Table(table) => mrb.call(*table, "[]", &[text]).map_err(reraise)?,
            Replacement::Block(block) => {
                set_last_match(mrb, Some(state))?;
                yield_block(mrb, *block, &[text])?
            }
            Replacement::Template(_) => unreachable!("handled above"),
        };
        let value = mrb.to_s(value).map_err(reraise)?;
        out.extend_from_slice(mrb.str_bytes(value).unwrap_or_default());
        mrb.arena_restore(arena);
        copied = end;
    }
    out.extend_from_slice(&subject[copied..]);
    let last = last_spans.map(|spans| MatchState { compiled, subject, spans });
    set_last_match(mrb, last)?;
    Ok((out, matched))
}

/// `str.sub(pattern, replacement)` / `str.sub(pattern) { |match| ... }`.
fn sub(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    if args.len() == 1 && keyword_hash(mrb).is_none() && mrb.is_nil(block_arg(mrb)) {
        return Err(RubyError::argument("wrong number of arguments (given 1, expected 2)"));
    }
    Ok(mrb.str(&substitute(mrb, self_, args, false)?.0))
}

/// `str.gsub(pattern, replacement)` / with a block; an Enumerator for
/// `gsub(pattern)` alone.
fn gsub(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    if args.len() == 1 && keyword_hash(mrb).is_none() && mrb.is_nil(block_arg(mrb)) {
        return mrb.call(self_, "to_enum", &[mrb.sym_value("gsub"), args[0]]).map_err(reraise);
    }
    Ok(mrb.str(&substitute(mrb, self_, args, true)?.0))
}

/// `sub!`/`gsub!`: `self` changed in place, or nil when nothing matched.
fn substitute_in_place(mrb: Mrb, self_: mrb_value, args: &[mrb_value], global: bool) -> RubyResult {
    let frozen = mrb.call(self_, "frozen?", &[]).map_err(reraise)?;
    if mrb.truthy(frozen) {
        return Err(RubyError::new("FrozenError", format!("can't modify frozen String: {}", mrb.inspect(self_))));
    }
    let (out, matched) = substitute(mrb, self_, args, global)?;
    if !matched {
        return Ok(mrb.nil());
    }
    mrb.call(self_, "replace", &[mrb.str(&out)]).map_err(reraise)
}

fn sub_in_place(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    if args.len() == 1 && keyword_hash(mrb).is_none() && mrb.is_nil(block_arg(mrb)) {
        return Err(RubyError::argument("wrong number of arguments (given 1, expected 2)"));
    }
    substitute_in_place(mrb, self_, args, false)
}

fn gsub_in_place(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    if args.len() == 1 && keyword_hash(mrb).is_none() && mrb.is_nil(block_arg(mrb)) {
        return mrb.call(self_, "to_enum", &[mrb.sym_value("gsub!"), args[0]]).map_err(reraise);
    }
    substitute_in_place(mrb, self_, args, true)
}

/// `str.scan(pattern)`: every match (the groups' texts when the pattern
/// has groups); with a block, yields each and returns `self`.
fn scan(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let compiled = pattern_arg(mrb, args[0], true)?;
    let subject = own_text(mrb, self_)?;
    let block = block_arg(mrb);
    let found = match_states(&compiled, &subject, None)?;
    let list = mrb.ary_new();
    let mut last_spans = None;
    for state in found {
        let arena = mrb.arena_save();
        let text = |group: &Option<(usize, usize)>| group.map_or(mrb.nil(), |(b, e)| mrb.str(&subject[b..e]));
        let item = if state.spans.len() > 1 {
            let captures = mrb.ary_new();
            for group in &state.spans[1..] {
                mrb.ary_push(captures, text(group));
            }
            captures
        } else {
            text(&state.spans[0])
        };
        last_spans = Some(state.spans.clone());
        if mrb.is_nil(block) {
            mrb.ary_push(list, item);
        } else {
            set_last_match(mrb, Some(state))?;
            yield_block(mrb, block, &[item])?;
        }
        mrb.arena_restore(arena);
    }
    set_last_match(mrb, last_spans.map(|spans| MatchState { compiled, subject, spans }))?;
    Ok(if mrb.is_nil(block) { list } else { self_ })
}

/// `str.split(regexp, limit = 0)`; with a block, yields each field and
/// returns `self`.
fn split(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let compiled: Rc<Compiled> = compiled_of(mrb, args[0])?;
    let subject = own_text(mrb, self_)?;
    let fields = split_ranges(mrb, &compiled, &subject, args.get(1))?;
    let block = block_arg(mrb);
    let list = mrb.ary_new();
    for (begin, end) in fields {
        let arena = mrb.arena_save();
        let field = mrb.str(&subject[begin..end]);
        if mrb.is_nil(block) {
            mrb.ary_push(list, field);
        } else {
            yield_block(mrb, block, &[field])?;
        }
        mrb.arena_restore(arena);
    }
    Ok(if mrb.is_nil(block) { list } else { self_ })
}

/// `str.index(regexp, pos = 0)`: byte offset of the first match, setting `$~`.
fn index(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let md = search_and_set(mrb, compiled_of(mrb, args[0])?, self_, args.get(1))?;
    Ok(match MATCH_DATA.get(mrb, md).and_then(|state| state.spans[0]) {
        Some((begin, _)) => mrb.int(begin as i64),
        None => mrb.nil(),
    })
}

/// `str[regexp]`, `str[regexp, group]` (a number or a name), setting `$~`.
fn aref(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let md = search_and_set(mrb, compiled_of(mrb, args[0])?, self_, None)?;
    if mrb.is_nil(md) {
        return Ok(md);
    }
    let group = args.get(1).copied().unwrap_or_else(|| mrb.int(0));
    mrb.call(md, "[]", &[group]).map_err(reraise)
}

/// `str =~ obj`: `obj =~ str` (TypeError for a String, as in CRuby).
fn match_operator(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    if mrb.is_string(args[0]) {
        return Err(RubyError::type_error("wrong argument type String (expected Regexp)"));
    }
    mrb.call(args[0], "=~", &[self_]).map_err(reraise)
}

/// `str.match(pattern, pos = 0)` (a String pattern is compiled): MatchData
/// or nil, setting `$~`; with a block, yields the MatchData.
fn match_(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let md = search_and_set(mrb, pattern_arg(mrb, args[0], false)?, self_, args.get(1))?;
    let block = block_arg(mrb);
    if mrb.is_nil(md) || mrb.is_nil(block) {
        return Ok(md);
    }
    yield_block(mrb, block, &[md])
}

/// `str.match?(pattern, pos = 0)`: true/false, `$~` untouched.
fn is_match(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    matches(mrb, &*pattern_arg(mrb, args[0], false)?, self_, args.get(1))
}

/// mruby's C function for `name` on String (before `init` redefines it).
fn core_method(mrb: Mrb, string: *mut RClass, name: &str) -> mrb_func_t {
    // SAFETY: live VM; string is the String class; the lookup does not raise.
    unsafe { mrbsys_method_cfunc(mrb.as_ptr(), string, mrb.sym(name)) }
}

pub fn init(mrb: Mrb) {
    // SAFETY: live VM; String always exists.
    let string = unsafe { mrbsys_string_class(mrb.as_ptr()) };
    CORE_METHODS.get_or_init(|| CoreMethods {
        split: core_method(mrb, string, "split"),
        index: core_method(mrb, string, "index"),
        aref: core_method(mrb, string, "[]"),
    });
    mrb.define_method(string, c"=~", ruby_fn!(match_operator), ARGS_ANY);
    mrb.define_method(string, c"match", ruby_fn!(match_), ARGS_ANY);
    mrb.define_method(string, c"match?", ruby_fn!(is_match), ARGS_ANY);
    mrb.define_method(string, c"sub", ruby_fn!(sub), ARGS_ANY);
    mrb.define_method(string, c"gsub", ruby_fn!(gsub), ARGS_ANY);
    mrb.define_method(string, c"sub!", ruby_fn!(sub_in_place), ARGS_ANY);
    mrb.define_method(string, c"gsub!", ruby_fn!(gsub_in_place), ARGS_ANY);
    mrb.define_method(string, c"scan", ruby_fn!(scan), ARGS_ANY);
    mrb.define_method(string, c"split", Some(split_entry), ARGS_ANY);
    mrb.define_method(string, c"index", Some(index_entry), ARGS_ANY);
    mrb.define_method(string, c"[]", Some(aref_entry), ARGS_ANY);
    mrb.define_method(string, c"slice", Some(aref_entry), ARGS_ANY);
    // mruby's helper for its own Ruby sub/gsub, replaced above: not left
    // for scripts to call
    // SAFETY: live VM; String is live; undefining a method does not raise.
    unsafe { mrb_undef_method(mrb.as_ptr(), string, c"__sub_replace".as_ptr()) };
}
