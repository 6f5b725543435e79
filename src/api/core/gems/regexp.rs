//! `Regexp`: Ruby regular expressions on Oniguruma (the `onig` crate, Ruby
//! syntax). Regexp literals work too: mruby compiles `/ab+c/i` into
//! `Regexp.compile("ab+c", "i")`.
//!
//! Strings in this mruby are byte strings, so every offset here is a byte
//! offset, as `String#[]` expects. UTF-8 text is matched as UTF-8; any other
//! bytes with a binary (ASCII-8BIT) compilation of the same pattern.
//!
//! The String methods that take a Regexp are in `string.rs`, on top of the
//! searches here; `mrblib/regexp.rb` adds public conveniences only
//! (`Regexp.union`, `Regexp.last_match`, `Symbol#match`...).

use core::cell::{OnceCell, RefCell};
use core::hash::{Hash, Hasher};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::rc::Rc;

use mruby_sys::*;
use onig::{EncodedBytes, MatchParam, Regex, RegexOptions, Region, SearchOptions, Syntax};

use super::match_data::{self, MatchState};
use super::{arg_name, block_arg, class, str_arg, yield_block, DataType, RubyError, RubyResult};
use crate::api::{arg_int, arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::{cpu_limit, Mrb};

/// `Regexp::IGNORECASE` and friends: the same bits as Oniguruma's options.
pub const IGNORECASE: u32 = 1;
pub const EXTENDED: u32 = 2;
pub const MULTILINE: u32 = 4;
const OPTION_MASK: u32 = IGNORECASE | EXTENDED | MULTILINE;

/// How many compiled patterns a worker keeps for reuse (literals are
/// compiled each time their line runs), and the longest source kept there.
const CACHE_CAPACITY: usize = 256;
const CACHE_MAX_SOURCE: usize = 4096;

/// Backtracks one search may take over all the start positions it tries
/// (Oniguruma's own default bounds only each attempt, at 10,000,000, and
/// leaves the whole search unlimited). Past it the search fails with
/// `RegexpError: retry-limit-in-search over`, within about a second of
/// CPU: one C call cannot be stopped by `mruby_cpu_limit`.
const RETRY_LIMIT_IN_SEARCH: u32 = 10_000_000;

/// Where each group matched (group 0 is the whole match), as byte ranges.
pub type Spans = Vec<Option<(usize, usize)>>;

/// A compiled pattern, shared by every Regexp with the same source and
/// options.
pub struct Compiled {
    pub source: Vec<u8>,
    pub options: u32,
    /// The pattern for UTF-8 text; `None` when the source is not UTF-8.
    utf8: Option<Regex>,
    /// The pattern for other bytes, compiled on first need (`None` when the
    /// pattern has no binary form, e.g. `\u{3042}`).
    binary: OnceCell<Option<Regex>>,
    /// Named groups in definition order, with their group numbers.
    pub names: Vec<(String, Vec<usize>)>,
}

thread_local! {
    /// Compiled patterns by options, then source.
    static CACHE: RefCell<Vec<HashMap<Vec<u8>, Rc<Compiled>>>> =
        RefCell::new((0..=OPTION_MASK).map(|_| HashMap::new()).collect());
}

impl Compiled {
    /// The compiled form of `source` with `options`, from the cache when
    /// possible. `Err` holds the RegexpError message.
    pub fn get(source: &[u8], options: u32) -> Result<Rc<Compiled>, RubyError> {
        let options = options & OPTION_MASK;
        let cached = CACHE.with(|cache| cache.borrow()[options as usize].get(source).cloned());
        if let Some(compiled) = cached {
            return Ok(compiled);
        }
        let compiled = Rc::new(Compiled::compile(source, options)?);
        if source.len() > CACHE_MAX_SOURCE {
            return Ok(compiled);
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let by_source = &mut cache[options as usize];
            if by_source.len() >= CACHE_CAPACITY {
                by_source.clear();
            }
            by_source.insert(source.to_vec(), Rc::clone(&compiled));
        });
        Ok(compiled)
    }

    fn compile(source: &[u8], options: u32) -> Result<Compiled, RubyError> {
        let error = |err: onig::Error| {
            RubyError::new("RegexpError", format!("{}: /{}/", err.description(), String::from_utf8_lossy(source)))
        };
        let (utf8, binary) = match core::str::from_utf8(source) {
            Ok(text) => (Some(compile_utf8(text, options).map_err(error)?), OnceCell::new()),
            Err(_) => (None, OnceCell::from(Some(compile_binary(source, options).map_err(error)?))),
        };
        let mut names = Vec::new();
        if let Some(regex) = utf8.as_ref().or_else(|| binary.get().and_then(Option::as_ref)) {
            regex.foreach_name(|name, groups| {
                names.push((name.to_owned(), groups.iter().map(|g| *g as usize).collect::<Vec<_>>()));
                true
            });
        }
        names.sort_by_key(|(_, groups)| groups.first().copied().unwrap_or(0));
        Ok(Compiled { source: source.to_vec(), options, utf8, binary, names })
    }

    /// The pattern to run on text that is (or is not) valid UTF-8.
    fn regex(&self, utf8: bool) -> Result<&Regex, RubyError> {
        if utf8 {
            if let Some(regex) = &self.utf8 {
                return Ok(regex);
            }
        }
        self.binary
            .get_or_init(|| compile_binary(&self.source, self.options).ok())
            .as_ref()
            .ok_or_else(|| RubyError::new("ArgumentError", "invalid byte sequence in UTF-8"))
    }

    /// The first match at or after byte `start`.
    pub fn search(&self, text: &Text, start: usize) -> Result<Option<Spans>, RubyError> {
        if start > text.bytes.len() {
            return Ok(None);
        }
        let regex = self.regex(text.utf8)?;
        let mut region = Region::new();
        let haystack = EncodedBytes::from_parts(text.bytes, regex.encoding());
        let param = MatchParam::default();
        // SAFETY: `param` owns a valid OnigMatchParam for this call.
        unsafe {
            onig_sys::onig_set_retry_limit_in_search_of_match_param(param.as_raw(), RETRY_LIMIT_IN_SEARCH.into());
        }
        let found = regex
            .search_with_param(
                haystack,
                start,
                text.bytes.len(),
                SearchOptions::SEARCH_OPTION_NONE,
                Some(&mut region),
                param,
            )
            .map_err(|err| RubyError::new("RegexpError", err.description().to_owned()))?;
        Ok(found.map(|_| (0..region.len()).map(|group| region.pos(group)).collect()))
    }

    /// Every match from the start, left to right, without overlaps; an empty
    /// match moves on by one character (CRuby's rule for scan and gsub).
    pub fn search_all(&self, text: &Text, limit: Option<usize>) -> Result<Vec<Spans>, RubyError> {
        let mut found = Vec::new();
        let mut start = 0;
        while start <= text.bytes.len() && limit.map_or(true, |limit| found.len() < limit) {
            if cpu_limit::budget_spent() {
                // Each search is bounded, their number is not: once the
                // run's CPU budget is spent, stop (the VM then raises
                // Nginx::CPULimitExceeded at its next instruction).
                return Err(RubyError::new("RegexpError", "stopped: the script's CPU time limit is exceeded"));
            }
            let Some(spans) = self.search(text, start)? else { break };
            let (begin, end) = spans[0].unwrap_or((start, start));
            start = if begin == end { end + text.char_len(end) } else { end };
            found.push(spans);
        }
        Ok(found)
    }

    /// The group number for a name: of several groups with that name, the
    /// last one that matched (CRuby's rule).
    pub fn group_named(&self, name: &[u8], spans: &Spans) -> Option<usize> {
        let (_, groups) = self.names.iter().find(|(n, _)| n.as_bytes() == name)?;
        groups.iter().rev().find(|g| spans.get(**g).is_some_and(Option::is_some)).or(groups.last()).copied()
    }

    /// `(?mi-x:source)`.
    fn to_s(&self) -> Vec<u8> {
        let mut out = b"(?".to_vec();
        out.extend_from_slice(&option_letters(self.options));
        let off = option_letters(!self.options & OPTION_MASK);
        if !off.is_empty() {
            out.push(b'-');
            out.extend_from_slice(&off);
        }
        out.push(b':');
        escape_slashes(&self.source, &mut out);
        out.push(b')');
        out
    }

    /// `/source/mi`.
    fn inspect(&self) -> Vec<u8> {
        let mut out = b"/".to_vec();
        escape_slashes(&self.source, &mut out);
        out.push(b'/');
        out.extend_from_slice(&option_letters(self.options));
        out
    }
}

fn onig_options(options: u32) -> RegexOptions {
    let mut onig = RegexOptions::REGEX_OPTION_NONE;
    if options & IGNORECASE != 0 {
        onig |= RegexOptions::REGEX_OPTION_IGNORECASE;
    }
    if options & EXTENDED != 0 {
        onig |= RegexOptions::REGEX_OPTION_EXTEND;
    }
    if options & MULTILINE != 0 {
        onig |= RegexOptions::REGEX_OPTION_MULTILINE;
    }
    onig
}

fn compile_utf8(source: &str, options: u32) -> Result<Regex, onig::Error> {
    Regex::with_options_and_encoding(source, onig_options(options), Syntax::ruby())
}

fn compile_binary(source: &[u8], options: u32) -> Result<Regex, onig::Error> {
    Regex::with_options_and_encoding(EncodedBytes::ascii(source), onig_options(options), Syntax::ruby())
}

/// CRuby's order: `m`, `i`, `x`.
fn option_letters(options: u32) -> Vec<u8> {
    [(MULTILINE, b'm'), (IGNORECASE, b'i'), (EXTENDED, b'x')]
        .iter()
        .filter(|(bit, _)| options & bit != 0)
        .map(|(_, letter)| *letter)
        .collect()
}

/// The source as it shows between slashes: `/` escaped, escapes kept,
/// control characters spelled out.
fn escape_slashes(source: &[u8], out: &mut Vec<u8>) {
    let mut bytes = source.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                out.push(b);
                if let Some(next) = bytes.next() {
                    out.push(next);
                }
            }
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02X}").as_bytes()),
            _ => out.push(b),
        }
    }
}

/// Text to match, with its encoding checked once.
pub struct Text<'a> {
    pub bytes: &'a [u8],
    pub utf8: bool,
}

impl<'a> Text<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Text { bytes, utf8: core::str::from_utf8(bytes).is_ok() }
    }

    /// Length of the character at `at` (1 past the end or in binary text).
    pub fn char_len(&self, at: usize) -> usize {
        let Some(lead) = self.bytes.get(at) else { return 1 };
        let len = match lead {
            _ if !self.utf8 => 1,
            0xf0.. => 4,
            0xe0.. => 3,
            0xc0.. => 2,
            _ => 1,
        };
        len.min(self.bytes.len() - at)
    }
}

pub static REGEXP: DataType<Rc<Compiled>> = DataType::new(c"Regexp");

/// The compiled pattern of a Regexp object.
pub fn compiled_of(mrb: Mrb, regexp: mrb_value) -> Result<Rc<Compiled>, RubyError> {
    REGEXP
        .get(mrb, regexp)
        .cloned()
        .ok_or_else(|| RubyError::new("TypeError", format!("uninitialized Regexp ({})", mrb.class_name(regexp))))
}

/// A new Regexp object for a compiled pattern.
pub fn new_regexp(mrb: Mrb, compiled: Rc<Compiled>) -> RubyResult {
    Ok(REGEXP.wrap(mrb, class(mrb, "Regexp")?, compiled))
}

/// Options as `Regexp.new` takes them: Integer bits, a String of letters
/// (`"mix"`, what literals pass), or any other truthy value for IGNORECASE.
fn parse_options(mrb: Mrb, value: Option<&mrb_value>) -> u32 {
    let Some(value) = value.copied() else { return 0 };
    if let Some(bits) = mrb.to_int(value) {
        return bits as u32 & OPTION_MASK;
    }
    if let Some(letters) = mrb.str_bytes(value) {
        return letters.iter().fold(0, |bits, letter| match letter {
            b'i' => bits | IGNORECASE,
            b'x' => bits | EXTENDED,
            b'm' => bits | MULTILINE,
            _ => bits,
        });
    }
    if mrb.truthy(value) {
        IGNORECASE
    } else {
        0
    }
}

/// `Regexp.new(source, options = nil)` / `Regexp.compile`; a Regexp source
/// keeps its own options.
fn initialize(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 3)?;
    let compiled = match REGEXP.get(mrb, args[0]) {
        Some(compiled) => Rc::clone(compiled),
        None => {
            let source = str_arg(mrb, args[0])?;
            Compiled::get(source, parse_options(mrb, args.get(1)))?
        }
    };
    REGEXP.set(mrb, self_, compiled)?;
    Ok(self_)
}

fn initialize_copy(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let compiled = compiled_of(mrb, args[0])?;
    REGEXP.set(mrb, self_, compiled)?;
    Ok(self_)
}

fn source(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(&compiled_of(mrb, self_)?.source))
}

fn options(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.int(compiled_of(mrb, self_)?.options.into()))
}

fn casefold(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.bool(compiled_of(mrb, self_)?.options & IGNORECASE != 0))
}

fn to_s(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(&compiled_of(mrb, self_)?.to_s()))
}

fn inspect(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(&compiled_of(mrb, self_)?.inspect()))
}

/// Same source and options.
fn equal(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let compiled = compiled_of(mrb, self_)?;
    let same = REGEXP
        .get(mrb, args[0])
        .is_some_and(|other| other.options == compiled.options && other.source == compiled.source);
    Ok(mrb.bool(same))
}

fn hash(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let compiled = compiled_of(mrb, self_)?;
    let mut hasher = DefaultHasher::new();
    compiled.source.hash(&mut hasher);
    compiled.options.hash(&mut hasher);
    Ok(mrb.int(hasher.finish() as i64))
}

fn names(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let compiled = compiled_of(mrb, self_)?;
    let list = mrb.ary_new();
    for (name, _) in &compiled.names {
        mrb.ary_push(list, mrb.str(name.as_bytes()));
    }
    Ok(list)
}

/// `{"name" => [group numbers]}`.
fn named_captures(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let compiled = compiled_of(mrb, self_)?;
    let hash = mrb.hash_new();
    for (name, groups) in &compiled.names {
        let numbers = mrb.ary_new();
        for group in groups {
            mrb.ary_push(numbers, mrb.int(*group as i64));
        }
        mrb.hash_set(hash, mrb.str(name.as_bytes()), numbers);
    }
    Ok(hash)
}

/// The text a matching method was given: a String or a Symbol's name;
/// `None` for nil (no match).
fn subject<'a>(mrb: Mrb, value: mrb_value) -> Result<Option<&'a [u8]>, RubyError> {
    if mrb.is_nil(value) {
        return Ok(None);
    }
    if let Some(sym) = mrb.to_sym(value) {
        return Ok(Some(mrb.sym_name(sym)));
    }
    str_arg(mrb, value).map(Some)
}

/// A start position (negative counts from the end) as a byte offset;
/// `None` outside the text.
fn start_offset(mrb: Mrb, value: Option<&mrb_value>, len: usize) -> Result<Option<usize>, RubyError> {
    let Some(value) = value else { return Ok(Some(0)) };
    let pos = arg_int(mrb, *value, "position")?;
    let pos = if pos < 0 { pos + len as i64 } else { pos };
    Ok((0..=len as i64).contains(&pos).then_some(pos as usize))
}

/// The pattern a String method was given: a Regexp, or a String (or
/// Symbol) compiled as a pattern (`literal` false: `String#match`) or
/// taken literally (`literal` true: `sub`, `gsub`, `scan`).
pub fn pattern_arg(mrb: Mrb, value: mrb_value, literal: bool) -> Result<Rc<Compiled>, RubyError> {
    if let Some(compiled) = REGEXP.get(mrb, value) {
        return Ok(Rc::clone(compiled));
    }
    if !mrb.is_string(value) && !mrb.is_symbol(value) {
        return Err(RubyError::new(
            "TypeError",
            format!("wrong argument type {} (expected Regexp)", mrb.class_name(value)),
        ));
    }
    let source = arg_name(mrb, value)?;
    if literal {
        Compiled::get(&escape_bytes(&source), 0)
    } else {
        Compiled::get(&source, 0)
    }
}

/// Searches `subject` (a String, a Symbol, or nil for no match) from `pos`,
/// sets `$~`, and returns the MatchData (or nil).
pub fn search_and_set(
    mrb: Mrb,
    compiled: Rc<Compiled>,
    subject_value: mrb_value,
    pos: Option<&mrb_value>,
) -> RubyResult {
    let found = match subject(mrb, subject_value)? {
        None => None,
        Some(bytes) => match start_offset(mrb, pos, bytes.len())? {
            None => None,
            Some(start) => {
                let text = Text::new(bytes);
                compiled.search(&text, start)?.map(|spans| (Rc::<[u8]>::from(bytes), spans))
            }
        },
    };
    let md = match found {
        Some((subject, spans)) => match_data::wrap(mrb, MatchState { compiled, subject, spans })?,
        None => mrb.nil(),
    };
    match_data::set_last_match(mrb, md);
    Ok(md)
}

/// Whether `subject` matches from `pos` (true/false), without MatchData
/// or `$~`.
pub fn matches(mrb: Mrb, compiled: &Compiled, subject_value: mrb_value, pos: Option<&mrb_value>) -> RubyResult {
    let Some(bytes) = subject(mrb, subject_value)? else { return Ok(mrb.bool(false)) };
    let Some(start) = start_offset(mrb, pos, bytes.len())? else { return Ok(mrb.bool(false)) };
    Ok(mrb.bool(compiled.search(&Text::new(bytes), start)?.is_some()))
}

/// `re.match(str, pos = 0)` → MatchData or nil, setting `$~`; with a
/// block, yields the MatchData and returns the block's value.
fn match_(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let md = search_and_set(mrb, compiled_of(mrb, self_)?, args[0], args.get(1))?;
    let block = block_arg(mrb);
    if mrb.is_nil(md) || mrb.is_nil(block) {
        return Ok(md);
    }
    yield_block(mrb, block, &[md])
}

/// `re =~ str` → byte offset of the match or nil, setting `$~`.
fn match_operator(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let md = search_and_set(mrb, compiled_of(mrb, self_)?, args[0], None)?;
    match match_data::MATCH_DATA.get(mrb, md).and_then(|state| state.spans[0]) {
        Some((begin, _)) => Ok(mrb.int(begin as i64)),
        None => Ok(mrb.nil()),
    }
}

/// `re === obj`: false for anything that is not text (no TypeError).
fn case_equal(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    if !mrb.is_string(args[0]) && !mrb.is_symbol(args[0]) {
        match_data::set_last_match(mrb, mrb.nil());
        return Ok(mrb.bool(false));
    }
    let md = search_and_set(mrb, compiled_of(mrb, self_)?, args[0], None)?;
    Ok(mrb.bool(!mrb.is_nil(md)))
}

/// `re.match?(str, pos = 0)`: no MatchData, `$~` untouched.
fn is_match(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    matches(mrb, &*compiled_of(mrb, self_)?, args[0], args.get(1))
}

/// Every match of `compiled` in `subject`, left to right (at most `limit`),
/// each as the state of a MatchData.
pub fn match_states(
    compiled: &Rc<Compiled>,
    subject: &Rc<[u8]>,
    limit: Option<usize>,
) -> Result<Vec<MatchState>, RubyError> {
    let found = compiled.search_all(&Text::new(subject), limit)?;
    Ok(found
        .into_iter()
        .map(|spans| MatchState { compiled: Rc::clone(compiled), subject: Rc::clone(subject), spans })
        .collect())
}

/// `subject` with the matches of `compiled` (the first, or all when
/// `global`) replaced by `template` (`\1`, `\k<name>`, `\0`, `` \` ``, `\'`,
/// `\\`), and the last match (for `$~`).
pub fn replace_template(
    compiled: &Rc<Compiled>,
    subject: &Rc<[u8]>,
    template: &[u8],
    global: bool,
) -> Result<(Vec<u8>, Option<MatchState>), RubyError> {
    let found = match_states(compiled, subject, if global { None } else { Some(1) })?;
    let mut out = Vec::with_capacity(subject.len());
    let mut copied = 0;
    for state in &found {
        let Some((begin, end)) = state.spans[0] else { continue };
        out.extend_from_slice(&subject[copied..begin]);
        expand(template, subject, &state.spans, compiled, &mut out)?;
        copied = end;
    }
    out.extend_from_slice(&subject[copied..]);
    Ok((out, found.into_iter().last()))
}

/// Appends `template` with its back-references filled in (CRuby's regsub).
pub fn expand(
    template: &[u8],
    subject: &[u8],
    spans: &Spans,
    compiled: &Compiled,
    out: &mut Vec<u8>,
) -> Result<(), RubyError> {
    let group = |n: usize, out: &mut Vec<u8>| {
        if let Some(Some((b, e))) = spans.get(n) {
            out.extend_from_slice(&subject[*b..*e]);
        }
    };
    let (whole_begin, whole_end) = spans[0].unwrap_or((0, 0));
    let mut i = 0;
    while i < template.len() {
        let c = template[i];
        i += 1;
        if c != b'\\' || i == template.len() {
            out.push(c);
            continue;
        }
        let next = template[i];
        i += 1;
        match next {
            b'0'..=b'9' => group((next - b'0') as usize, out),
            b'&' => group(0, out),
            b'`' => out.extend_from_slice(&subject[..whole_begin]),
            b'\'' => out.extend_from_slice(&subject[whole_end..]),
            b'+' => {
                if let Some(last) = (1..spans.len()).rev().find(|g| spans[*g].is_some()) {
                    group(last, out);
                }
            }
            b'\\' => out.push(b'\\'),
            b'k' if template.get(i) == Some(&b'<') => {
                let Some(close) = template[i..].iter().position(|b| *b == b'>') else {
                    out.extend_from_slice(b"\\k");
                    continue;
                };
                let name = &template[i + 1..i + close];
                let number = compiled.group_named(name, spans).ok_or_else(|| {
                    RubyError::new(
                        "IndexError",
                        format!("undefined group name reference: {}", String::from_utf8_lossy(name)),
                    )
                })?;
                group(number, out);
                i += close + 1;
            }
            _ => out.extend_from_slice(&[b'\\', next]),
        }
    }
    Ok(())
}

/// `String#split` with a Regexp, CRuby's rules (captures are included;
/// limit 0 drops trailing empty fields): the fields as byte ranges.
pub fn split_ranges(
    mrb: Mrb,
    compiled: &Compiled,
    bytes: &[u8],
    limit: Option<&mrb_value>,
) -> Result<Vec<(usize, usize)>, RubyError> {
    let limit = match limit {
        Some(v) if !mrb.is_nil(*v) => arg_int(mrb, *v, "limit")?,
        _ => 0,
    };
    split_fields(compiled, &Text::new(bytes), limit)
}

/// The byte ranges of the fields (CRuby's `rb_str_split_m` for a Regexp).
fn split_fields(compiled: &Compiled, text: &Text, limit: i64) -> Result<Vec<(usize, usize)>, RubyError> {
    let len = text.bytes.len();
    let mut fields = Vec::new();
    if len == 0 {
        return Ok(fields);
    }
    if limit == 1 {
        fields.push((0, len));
        return Ok(fields);
    }
    let (mut beg, mut start) = (0, 0);
    let mut last_null = false;
    let mut count = 1;
    while let Some(spans) = compiled.search(text, start)? {
        let (match_begin, match_end) = spans[0].unwrap_or((start, start));
        if start == match_begin && match_begin == match_end {
            if last_null {
                fields.push((beg, beg + text.char_len(beg)));
                beg = start;
            } else {
                start += text.char_len(start);
                last_null = true;
                continue;
            }
        } else {
            fields.push((beg, match_begin));
            beg = match_end;
            start = match_end;
        }
        last_null = false;
        fields.extend(spans.iter().skip(1).flatten().copied());
        count += 1;
        if limit > 0 && limit <= count {
            break;
        }
    }
    if limit != 0 || len > beg {
        fields.push((beg, len));
    }
    if limit == 0 {
        while fields.last().is_some_and(|(b, e)| b == e) {
            fields.pop();
        }
    }
    Ok(fields)
}

/// `Regexp.escape(str)` / `Regexp.quote`: `str` with its metacharacters
/// escaped.
fn escape(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    Ok(mrb.str(&escape_bytes(&arg_name(mrb, args[0])?)))
}

/// `text` with the pattern metacharacters escaped.
fn escape_bytes(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        match b {
            b'[' | b']' | b'{' | b'}' | b'(' | b')' | b'|' | b'-' | b'*' | b'.' | b'\\' | b'?' | b'+' | b'^' | b'$'
            | b'#' => out.extend_from_slice(&[b'\\', b]),
            b' ' => out.extend_from_slice(b"\\ "),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            _ => out.push(b),
        }
    }
    out
}

pub fn init(mrb: Mrb) {
    let regexp = mrb.define_class(c"Regexp");
    super::make_data_class(regexp);
    mrb.define_const(regexp, c"IGNORECASE", mrb.int(IGNORECASE.into()));
    mrb.define_const(regexp, c"EXTENDED", mrb.int(EXTENDED.into()));
    mrb.define_const(regexp, c"MULTILINE", mrb.int(MULTILINE.into()));
    mrb.define_class_method(regexp, c"escape", ruby_fn!(escape), ARGS_ANY);
    mrb.define_class_method(regexp, c"quote", ruby_fn!(escape), ARGS_ANY);
    mrb.define_method(regexp, c"initialize", ruby_fn!(initialize), ARGS_ANY);
    mrb.define_method(regexp, c"initialize_copy", ruby_fn!(initialize_copy), ARGS_ANY);
    mrb.define_method(regexp, c"source", ruby_fn!(source), ARGS_ANY);
    mrb.define_method(regexp, c"options", ruby_fn!(options), ARGS_ANY);
    mrb.define_method(regexp, c"casefold?", ruby_fn!(casefold), ARGS_ANY);
    mrb.define_method(regexp, c"to_s", ruby_fn!(to_s), ARGS_ANY);
    mrb.define_method(regexp, c"inspect", ruby_fn!(inspect), ARGS_ANY);
    mrb.define_method(regexp, c"==", ruby_fn!(equal), ARGS_ANY);
    mrb.define_method(regexp, c"eql?", ruby_fn!(equal), ARGS_ANY);
    mrb.define_method(regexp, c"hash", ruby_fn!(hash), ARGS_ANY);
    mrb.define_method(regexp, c"names", ruby_fn!(names), ARGS_ANY);
    mrb.define_method(regexp, c"named_captures", ruby_fn!(named_captures), ARGS_ANY);
    mrb.define_method(regexp, c"match", ruby_fn!(match_), ARGS_ANY);
    mrb.define_method(regexp, c"=~", ruby_fn!(match_operator), ARGS_ANY);
    mrb.define_method(regexp, c"===", ruby_fn!(case_equal), ARGS_ANY);
    mrb.define_method(regexp, c"match?", ruby_fn!(is_match), ARGS_ANY);
}
