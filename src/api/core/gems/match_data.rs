//! `MatchData`: where a Regexp matched, and the `$~` family of globals.
//!
//! mruby compiles `$~`, `$&` and `$1`..`$9` into reads of plain globals, so
//! every method that matches sets all of them ([`set_last_match`]). The VM
//! removes globals a request created when it ends.

use std::rc::Rc;

use mruby_sys::*;

use super::regexp::{new_regexp, Compiled, Spans};
use super::{arg_name, class, reraise, DataType, RubyError, RubyResult};
use crate::api::{arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// A successful match: the pattern, a copy of the text (shared by the
/// matches of one `scan`/`gsub`), and the groups' byte ranges.
pub struct MatchState {
    pub compiled: Rc<Compiled>,
    pub subject: Rc<[u8]>,
    pub spans: Spans,
}

impl MatchState {
    fn group(&self, n: usize) -> Option<&[u8]> {
        self.spans.get(n).copied().flatten().map(|(b, e)| &self.subject[b..e])
    }

    fn whole(&self) -> (usize, usize) {
        self.spans[0].unwrap_or((0, 0))
    }

    fn pre_match(&self) -> &[u8] {
        &self.subject[..self.whole().0]
    }

    fn post_match(&self) -> &[u8] {
        &self.subject[self.whole().1..]
    }

    /// The highest-numbered group that matched (`$+`).
    fn last_group(&self) -> Option<&[u8]> {
        (1..self.spans.len()).rev().find_map(|n| self.group(n))
    }
}

pub static MATCH_DATA: DataType<MatchState> = DataType::new(c"MatchData");

/// A new MatchData object.
pub fn wrap(mrb: Mrb, state: MatchState) -> RubyResult {
    Ok(MATCH_DATA.wrap(mrb, class(mrb, "MatchData")?, state))
}

fn state<'a>(mrb: Mrb, md: mrb_value) -> Result<&'a MatchState, RubyError> {
    MATCH_DATA
        .get(mrb, md)
        .ok_or_else(|| RubyError::new("TypeError", format!("uninitialized MatchData ({})", mrb.class_name(md))))
}

fn text_or_nil(mrb: Mrb, bytes: Option<&[u8]>) -> mrb_value {
    bytes.map_or(mrb.nil(), |b| mrb.str(b))
}

/// Sets `$~` to `md` (a MatchData, or nil for no match) and `$&`, `` $` ``,
/// `$'`, `$+`, `$1`..`$9` from it.
pub fn set_last_match(mrb: Mrb, md: mrb_value) {
    let state = MATCH_DATA.get(mrb, md);
    mrb.gv_set("$~", if state.is_some() { md } else { mrb.nil() });
    mrb.gv_set("$&", text_or_nil(mrb, state.and_then(|s| s.group(0))));
    mrb.gv_set("$`", text_or_nil(mrb, state.map(MatchState::pre_match)));
    mrb.gv_set("$'", text_or_nil(mrb, state.map(MatchState::post_match)));
    mrb.gv_set("$+", text_or_nil(mrb, state.and_then(MatchState::last_group)));
    for (n, name) in ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"].iter().enumerate() {
        mrb.gv_set(name, text_or_nil(mrb, state.and_then(|s| s.group(n + 1))));
    }
}

/// The group an index names: an Integer (negative from the end; `None`
/// past the groups) or a group name (IndexError if there is none).
fn group_index(mrb: Mrb, state: &MatchState, index: mrb_value) -> Result<Option<usize>, RubyError> {
    if let Some(i) = mrb.to_int(index) {
        let count = state.spans.len() as i64;
        let i = if i < 0 { i + count } else { i };
        return Ok((0..count).contains(&i).then_some(i as usize));
    }
    if !mrb.is_string(index) && !mrb.is_symbol(index) {
        return Err(RubyError::new(
            "TypeError",
            format!("no implicit conversion of {} into Integer", mrb.class_name(index)),
        ));
    }
    let name = arg_name(mrb, index)?;
    match state.compiled.group_named(&name, &state.spans) {
        Some(n) => Ok(Some(n)),
        None => Err(RubyError::new(
            "IndexError",
            format!("undefined group name reference: {}", String::from_utf8_lossy(&name)),
        )),
    }
}

/// Like [`group_index`], but an index past the groups is an IndexError.
fn existing_group(mrb: Mrb, state: &MatchState, index: mrb_value) -> Result<usize, RubyError> {
    group_index(mrb, state, index)?
        .ok_or_else(|| RubyError::new("IndexError", format!("index {} out of matches", mrb.inspect(index))))
}

/// `md[n]`, `md["name"]`, `md[:name]`; `md[start, len]` and `md[range]` as
/// on `to_a`.
fn aref(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let state = state(mrb, self_)?;
    // SAFETY: reads the tag of a value.
    let range = unsafe { mrbsys_type(args[0]) } as u32 == mrb_vtype_MRB_TT_RANGE;
    if args.len() == 2 || range {
        let groups = to_a(mrb, self_, &[])?;
        return mrb.call(groups, "[]", args).map_err(reraise);
    }
    Ok(match group_index(mrb, state, args[0])? {
        Some(n) => text_or_nil(mrb, state.group(n)),
        None => mrb.nil(),
    })
}

/// `md.begin(n)`: byte offset where group `n` starts (nil if it did not
/// take part).
fn begin(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let state = state(mrb, self_)?;
    let n = existing_group(mrb, state, args[0])?;
    Ok(state.spans[n].map_or(mrb.nil(), |(b, _)| mrb.int(b as i64)))
}

fn end(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let state = state(mrb, self_)?;
    let n = existing_group(mrb, state, args[0])?;
    Ok(state.spans[n].map_or(mrb.nil(), |(_, e)| mrb.int(e as i64)))
}

/// `md.offset(n)` → `[begin, end]`.
fn offset(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let state = state(mrb, self_)?;
    let n = existing_group(mrb, state, args[0])?;
    let pair = mrb.ary_new();
    let (b, e) = match state.spans[n] {
        Some((b, e)) => (mrb.int(b as i64), mrb.int(e as i64)),
        None => (mrb.nil(), mrb.nil()),
    };
    mrb.ary_push(pair, b);
    mrb.ary_push(pair, e);
    Ok(pair)
}

fn groups_from(mrb: Mrb, state: &MatchState, first: usize) -> mrb_value {
    let list = mrb.ary_new();
    for n in first..state.spans.len() {
        mrb.ary_push(list, text_or_nil(mrb, state.group(n)));
    }
    list
}

/// `md.to_a` → `[whole, group1, ...]`.
fn to_a(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(groups_from(mrb, state(mrb, self_)?, 0))
}

fn captures(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(groups_from(mrb, state(mrb, self_)?, 1))
}

/// `{"name" => text}` (of groups sharing a name, the last that matched).
fn named_captures(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let state = state(mrb, self_)?;
    let hash = mrb.hash_new();
    for (name, _) in &state.compiled.names {
        let n = state.compiled.group_named(name.as_bytes(), &state.spans);
        mrb.hash_set(hash, mrb.str(name.as_bytes()), text_or_nil(mrb, n.and_then(|n| state.group(n))));
    }
    Ok(hash)
}

fn names(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let state = state(mrb, self_)?;
    let list = mrb.ary_new();
    for (name, _) in &state.compiled.names {
        mrb.ary_push(list, mrb.str(name.as_bytes()));
    }
    Ok(list)
}

fn pre_match(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(state(mrb, self_)?.pre_match()))
}

fn post_match(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(state(mrb, self_)?.post_match()))
}

fn to_s(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(text_or_nil(mrb, state(mrb, self_)?.group(0)))
}

/// Number of groups plus one.
fn size(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.int(state(mrb, self_)?.spans.len() as i64))
}

/// The matched text (a frozen copy).
fn string(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let text = mrb.str(&state(mrb, self_)?.subject);
    // SAFETY: live VM; text is a new String.
    Ok(unsafe { mrb_obj_freeze(mrb.as_ptr(), text) })
}

fn regexp(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    new_regexp(mrb, Rc::clone(&state(mrb, self_)?.compiled))
}

/// `#<MatchData "ab" 1:"b" name:"c">`.
fn inspect(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let state = state(mrb, self_)?;
    let quoted = |n: usize| match state.group(n) {
        Some(text) => mrb.inspect(mrb.str(text)),
        None => String::from("nil"),
    };
    let mut out = format!("#<MatchData {}", quoted(0));
    for n in 1..state.spans.len() {
        let label = state
            .compiled
            .names
            .iter()
            .find(|(_, groups)| groups.contains(&n))
            .map_or_else(|| n.to_string(), |(name, _)| name.clone());
        out.push_str(&format!(" {label}:{}", quoted(n)));
    }
    out.push('>');
    Ok(mrb.str(out.as_bytes()))
}

/// Same text, pattern and groups.
fn equal(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let state = state(mrb, self_)?;
    let same = MATCH_DATA.get(mrb, args[0]).is_some_and(|other| {
        other.subject == state.subject
            && other.spans == state.spans
            && other.compiled.source == state.compiled.source
            && other.compiled.options == state.compiled.options
    });
    Ok(mrb.bool(same))
}

fn initialize_copy(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let original = state(mrb, args[0])?;
    let copy = MatchState {
        compiled: Rc::clone(&original.compiled),
        subject: Rc::clone(&original.subject),
        spans: original.spans.clone(),
    };
    MATCH_DATA.set(mrb, self_, copy)?;
    Ok(self_)
}

pub fn init(mrb: Mrb) {
    let match_data = mrb.define_class(c"MatchData");
    super::make_data_class(match_data);
    // SAFETY: live VM; match_data is live; removing `new` keeps scripts from
    // making MatchData objects with nothing inside.
    unsafe { mrb_undef_class_method(mrb.as_ptr(), match_data, c"new".as_ptr()) };
    mrb.define_method(match_data, c"[]", ruby_fn!(aref), ARGS_ANY);
    mrb.define_method(match_data, c"begin", ruby_fn!(begin), ARGS_ANY);
    mrb.define_method(match_data, c"end", ruby_fn!(end), ARGS_ANY);
    mrb.define_method(match_data, c"offset", ruby_fn!(offset), ARGS_ANY);
    mrb.define_method(match_data, c"to_a", ruby_fn!(to_a), ARGS_ANY);
    mrb.define_method(match_data, c"captures", ruby_fn!(captures), ARGS_ANY);
    mrb.define_method(match_data, c"named_captures", ruby_fn!(named_captures), ARGS_ANY);
    mrb.define_method(match_data, c"names", ruby_fn!(names), ARGS_ANY);
    mrb.define_method(match_data, c"pre_match", ruby_fn!(pre_match), ARGS_ANY);
    mrb.define_method(match_data, c"post_match", ruby_fn!(post_match), ARGS_ANY);
    mrb.define_method(match_data, c"to_s", ruby_fn!(to_s), ARGS_ANY);
    mrb.define_method(match_data, c"size", ruby_fn!(size), ARGS_ANY);
    mrb.define_method(match_data, c"length", ruby_fn!(size), ARGS_ANY);
    mrb.define_method(match_data, c"string", ruby_fn!(string), ARGS_ANY);
    mrb.define_method(match_data, c"regexp", ruby_fn!(regexp), ARGS_ANY);
    mrb.define_method(match_data, c"inspect", ruby_fn!(inspect), ARGS_ANY);
    mrb.define_method(match_data, c"==", ruby_fn!(equal), ARGS_ANY);
    mrb.define_method(match_data, c"eql?", ruby_fn!(equal), ARGS_ANY);
    mrb.define_method(match_data, c"initialize_copy", ruby_fn!(initialize_copy), ARGS_ANY);
}
