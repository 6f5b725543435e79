//! `Digest::MD5`, `SHA1`, `SHA256`, `SHA384`, `SHA512` (RustCrypto's md-5,
//! sha1, sha2): one-shot class methods and incremental instances, which
//! share `Digest::Base`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mruby_sys::*;
use sha2::digest::core_api::BlockSizeUser;
use sha2::digest::DynDigest;

use super::{define_class_under, str_arg, DataType, RubyError, RubyResult};
use crate::api::{arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// The running state of one digest object.
#[derive(Clone)]
enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn state(&mut self) -> &mut dyn DynDigest {
        match self {
            Hasher::Md5(d) => d,
            Hasher::Sha1(d) => d,
            Hasher::Sha256(d) => d,
            Hasher::Sha384(d) => d,
            Hasher::Sha512(d) => d,
        }
    }

    fn block_size(&self) -> usize {
        match self {
            Hasher::Md5(_) => md5::Md5::block_size(),
            Hasher::Sha1(_) => sha1::Sha1::block_size(),
            Hasher::Sha256(_) => sha2::Sha256::block_size(),
            Hasher::Sha384(_) => sha2::Sha384::block_size(),
            Hasher::Sha512(_) => sha2::Sha512::block_size(),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.state().update(data);
    }

    /// The digest of what was fed so far; the state goes on unchanged.
    fn peek(&self) -> Vec<u8> {
        self.clone().finish()
    }

    /// The digest, and the state back to empty.
    fn finish(&mut self) -> Vec<u8> {
        let state = self.state();
        let mut out = vec![0; state.output_size()];
        // the buffer has exactly output_size bytes, the only failure case
        let _ = state.finalize_into_reset(&mut out);
        out
    }
}

/// The digest classes, by their Rust types.
trait Algorithm {
    fn hasher() -> Hasher;
}

impl Algorithm for md5::Md5 {
    fn hasher() -> Hasher {
        Hasher::Md5(Default::default())
    }
}

impl Algorithm for sha1::Sha1 {
    fn hasher() -> Hasher {
        Hasher::Sha1(Default::default())
    }
}

impl Algorithm for sha2::Sha256 {
    fn hasher() -> Hasher {
        Hasher::Sha256(Default::default())
    }
}

impl Algorithm for sha2::Sha384 {
    fn hasher() -> Hasher {
        Hasher::Sha384(Default::default())
    }
}

impl Algorithm for sha2::Sha512 {
    fn hasher() -> Hasher {
        Hasher::Sha512(Default::default())
    }
}

static DIGEST: DataType<Hasher> = DataType::new(c"Digest");

fn hasher<'a>(mrb: Mrb, self_: mrb_value) -> Result<&'a mut Hasher, RubyError> {
    DIGEST
        .get_mut(mrb, self_)
        .ok_or_else(|| RubyError::new("TypeError", format!("uninitialized digest ({})", mrb.class_name(self_))))
}

/// How a digest is returned: raw bytes, lowercase hex, or base64.
#[derive(Clone, Copy)]
enum Form {
    Raw,
    Hex,
    Base64,
}

fn render(mrb: Mrb, bytes: &[u8], form: Form) -> mrb_value {
    match form {
        Form::Raw => mrb.str(bytes),
        Form::Hex => mrb.str(hex::encode(bytes).as_bytes()),
        Form::Base64 => mrb.str(BASE64.encode(bytes).as_bytes()),
    }
}

/// `Digest::X.digest(str)` / `hexdigest` / `base64digest`.
fn one_shot<A: Algorithm>(mrb: Mrb, args: &[mrb_value], form: Form) -> RubyResult {
    arity(args, 1, 1)?;
    let mut hasher = A::hasher();
    hasher.update(str_arg(mrb, args[0])?);
    Ok(render(mrb, &hasher.finish(), form))
}

fn class_digest<A: Algorithm>(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    one_shot::<A>(mrb, args, Form::Raw)
}

fn class_hexdigest<A: Algorithm>(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    one_shot::<A>(mrb, args, Form::Hex)
}

fn class_base64digest<A: Algorithm>(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    one_shot::<A>(mrb, args, Form::Base64)
}

/// `Digest::X.new(str = nil)`: an empty state (fed `str` if given).
fn initialize<A: Algorithm>(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 1)?;
    let mut hasher = A::hasher();
    if let Some(data) = args.first() {
        hasher.update(str_arg(mrb, *data)?);
    }
    DIGEST.set(mrb, self_, hasher)?;
    Ok(self_)
}

fn initialize_copy(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let copy = hasher(mrb, args[0])?.clone();
    DIGEST.set(mrb, self_, copy)?;
    Ok(self_)
}

/// `update(str)` / `<<`: feeds more data; returns self.
fn update(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let data = str_arg(mrb, args[0])?;
    hasher(mrb, self_)?.update(data);
    Ok(self_)
}

/// `digest` (state kept) or `digest(str)` (the digest of `str` alone; the
/// state is reset), in `form`.
fn instance_digest(mrb: Mrb, self_: mrb_value, args: &[mrb_value], form: Form) -> RubyResult {
    arity(args, 0, 1)?;
    let hasher = hasher(mrb, self_)?;
    let bytes = match args.first() {
        Some(data) => {
            let data = str_arg(mrb, *data)?;
            hasher.finish();
            hasher.update(data);
            hasher.finish()
        }
        None => hasher.peek(),
    };
    Ok(render(mrb, &bytes, form))
}

fn digest(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    instance_digest(mrb, self_, args, Form::Raw)
}

fn hexdigest(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    instance_digest(mrb, self_, args, Form::Hex)
}

fn base64digest(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    instance_digest(mrb, self_, args, Form::Base64)
}

/// `digest!` / `hexdigest!`: the digest, and the state reset.
fn digest_bang(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(render(mrb, &hasher(mrb, self_)?.finish(), Form::Raw))
}

fn hexdigest_bang(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(render(mrb, &hasher(mrb, self_)?.finish(), Form::Hex))
}

fn reset(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    hasher(mrb, self_)?.state().reset();
    Ok(self_)
}

fn digest_length(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.int(hasher(mrb, self_)?.state().output_size() as i64))
}

fn block_length(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.int(hasher(mrb, self_)?.block_size() as i64))
}

/// Equal to another digest with the same result, or to its hex String.
fn equal(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let mine = hasher(mrb, self_)?.peek();
    let same = match (DIGEST.get(mrb, args[0]), mrb.str_bytes(args[0])) {
        (Some(other), _) => other.peek() == mine,
        (None, Some(text)) => text == hex::encode(&mine).as_bytes(),
        (None, None) => false,
    };
    Ok(mrb.bool(same))
}

/// `#<Digest::MD5: 9e10...>`.
fn inspect(mrb: Mrb, self_: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let hex = hex::encode(hasher(mrb, self_)?.peek());
    Ok(mrb.str(format!("#<{}: {hex}>", mrb.class_name(self_)).as_bytes()))
}

/// Defines `Digest::<name>` for the algorithm `$algorithm` (a macro: the
/// trampolines need concrete types).
macro_rules! define_algorithm {
    ($mrb:expr, $digest:expr, $base:expr, $name:expr, $algorithm:ty) => {{
        let class = define_class_under($mrb, $digest, $name, $base);
        $mrb.define_method(class, c"initialize", ruby_fn!(initialize::<$algorithm>), ARGS_ANY);
        $mrb.define_class_method(class, c"digest", ruby_fn!(class_digest::<$algorithm>), ARGS_ANY);
        $mrb.define_class_method(class, c"hexdigest", ruby_fn!(class_hexdigest::<$algorithm>), ARGS_ANY);
        $mrb.define_class_method(class, c"base64digest", ruby_fn!(class_base64digest::<$algorithm>), ARGS_ANY);
    }};
}

pub fn init(mrb: Mrb) {
    let module = mrb.define_module(c"Digest");
    let base = define_class_under(mrb, module, c"Base", mrb.object_class());
    super::make_data_class(base);
    mrb.define_method(base, c"initialize_copy", ruby_fn!(initialize_copy), ARGS_ANY);
    mrb.define_method(base, c"update", ruby_fn!(update), ARGS_ANY);
    mrb.define_method(base, c"<<", ruby_fn!(update), ARGS_ANY);
    mrb.define_method(base, c"digest", ruby_fn!(digest), ARGS_ANY);
    mrb.define_method(base, c"hexdigest", ruby_fn!(hexdigest), ARGS_ANY);
    mrb.define_method(base, c"base64digest", ruby_fn!(base64digest), ARGS_ANY);
    mrb.define_method(base, c"to_s", ruby_fn!(hexdigest), ARGS_ANY);
    mrb.define_method(base, c"digest!", ruby_fn!(digest_bang), ARGS_ANY);
    mrb.define_method(base, c"hexdigest!", ruby_fn!(hexdigest_bang), ARGS_ANY);
    mrb.define_method(base, c"reset", ruby_fn!(reset), ARGS_ANY);
    mrb.define_method(base, c"digest_length", ruby_fn!(digest_length), ARGS_ANY);
    mrb.define_method(base, c"length", ruby_fn!(digest_length), ARGS_ANY);
    mrb.define_method(base, c"size", ruby_fn!(digest_length), ARGS_ANY);
    mrb.define_method(base, c"block_length", ruby_fn!(block_length), ARGS_ANY);
    mrb.define_method(base, c"==", ruby_fn!(equal), ARGS_ANY);
    mrb.define_method(base, c"inspect", ruby_fn!(inspect), ARGS_ANY);
    define_algorithm!(mrb, module, base, c"MD5", md5::Md5);
    define_algorithm!(mrb, module, base, c"SHA1", sha1::Sha1);
    define_algorithm!(mrb, module, base, c"SHA256", sha2::Sha256);
    define_algorithm!(mrb, module, base, c"SHA384", sha2::Sha384);
    define_algorithm!(mrb, module, base, c"SHA512", sha2::Sha512);
}
