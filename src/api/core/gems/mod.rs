//! The Ruby library ngx_mruby users rely on beyond Debian's libmruby:
//! Process, JSON, Regexp/MatchData, Digest, ENV, SecureRandom (StringIO is
//! all Ruby, in `mrblib/stringio.rb`).
//!
//! Gem methods may raise any exception class (`JSON::ParserError`,
//! `RegexpError`, `KeyError`, `Errno::ESRCH`...): they return
//! `RubyError::new(class path, ..)` through the one FFI edge of every
//! Rust-defined method (`api::call_method`, then `Mrb::finish`).

pub mod digest;
pub mod env;
pub mod json;
pub mod match_data;
pub mod process;
pub mod regexp;
pub mod secure_random;
pub mod string;

use core::ffi::{c_void, CStr};
use core::marker::PhantomData;

use mruby_sys::*;

use crate::vm::Mrb;

pub use crate::vm::{RubyError, RubyResult};

/// The exception `Mrb::call` caught, to raise again unchanged.
pub fn reraise(exc: mrb_value) -> RubyError {
    RubyError::reraise(exc)
}

/// `Errno::<NAME>` for an errno (a `SystemCallError` when this VM has no class
/// for it), with CRuby's message: `"No such process - kill"`.
pub fn errno_error(errno: nix::errno::Errno, context: &str) -> RubyError {
    let class = match errno {
        nix::errno::Errno::EPERM => "Errno::EPERM",
        nix::errno::Errno::ENOENT => "Errno::ENOENT",
        nix::errno::Errno::ESRCH => "Errno::ESRCH",
        nix::errno::Errno::EINVAL => "Errno::EINVAL",
        _ => "SystemCallError",
    };
    RubyError::new(class, format!("{} - {context}", errno.desc()))
}

/// How mruby frees the Rust value a Ruby object owns: one static per type.
pub struct DataType<T> {
    raw: mrb_data_type,
    owns: PhantomData<fn() -> T>,
}

// SAFETY: the table only holds a static name and a function pointer.
unsafe impl<T> Sync for DataType<T> {}

impl<T> DataType<T> {
    /// A type named `name` (shown in mruby's type errors) whose objects own
    /// a `Box<T>`, dropped when the object is collected.
    pub const fn new(name: &'static CStr) -> Self {
        DataType { raw: mrb_data_type { struct_name: name.as_ptr(), dfree: Some(free_boxed::<T>) }, owns: PhantomData }
    }

    /// A new object of `class` owning `value`.
    pub(crate) fn wrap(&'static self, mrb: Mrb, class: *mut RClass, value: T) -> mrb_value {
        let ptr = Box::into_raw(Box::new(value));
        // SAFETY: live VM; class creates data objects; the object owns ptr
        // from here on and frees it through `free_boxed::<T>`.
        unsafe { mrbsys_obj_value(mrb_data_object_alloc(mrb.as_ptr(), class, ptr.cast(), &self.raw).cast()) }
    }

    /// Gives `obj` (an instance of a class whose instances are data
    /// objects) `value`, dropping what it owned before.
    pub fn set(&'static self, mrb: Mrb, obj: mrb_value, value: T) -> Result<(), RubyError> {
        // SAFETY: reads the tag of a value.
        if unsafe { mrbsys_type(obj) } as u32 != mrb_vtype_MRB_TT_CDATA {
            return Err(RubyError::new("TypeError", format!("{} is not a data object", mrb.class_name(obj))));
        }
        // SAFETY: obj is a data object, so its payload is an RData.
        let current_type = unsafe { (*mrbsys_ptr(obj).cast::<RData>()).type_ };
        if !current_type.is_null() && !core::ptr::eq(current_type, &self.raw) {
            return Err(RubyError::new("TypeError", format!("{} holds other data", mrb.class_name(obj))));
        }
        // SAFETY: obj is a data object of this type or still empty; the old
        // pointer came from Box::into_raw below and nothing else frees it.
        unsafe {
            let old = mrb_data_check_get_ptr(mrb.as_ptr(), obj, &self.raw);
            mrbsys_data_init(obj, core::ptr::null_mut(), core::ptr::null());
            if !old.is_null() {
                drop(Box::from_raw(old.cast::<T>()));
            }
            mrbsys_data_init(obj, Box::into_raw(Box::new(value)).cast(), &self.raw);
        }
        Ok(())
    }

    /// The value `obj` owns; `None` when it is not one of ours or was never
    /// initialized (a `dup` before `initialize_copy`, an `allocate`).
    ///
    /// The reference lives as long as the object and its data: callers use
    /// it before running Ruby code that could replace either.
    pub fn get<'a>(&'static self, mrb: Mrb, obj: mrb_value) -> Option<&'a T> {
        // SAFETY: live VM; returns NULL unless obj is a data object of this type.
        let ptr = unsafe { mrb_data_check_get_ptr(mrb.as_ptr(), obj, &self.raw) };
        // SAFETY: a non-null pointer of this type came from Box::into_raw.
        (!ptr.is_null()).then(|| unsafe { &*ptr.cast::<T>() })
    }

    /// Mutable access, under the same rule as [`DataType::get`].
    pub fn get_mut<'a>(&'static self, mrb: Mrb, obj: mrb_value) -> Option<&'a mut T> {
        // SAFETY: live VM; returns NULL unless obj is a data object of this type.
        let ptr = unsafe { mrb_data_check_get_ptr(mrb.as_ptr(), obj, &self.raw) };
        // SAFETY: as in `get`; methods take one reference at a time.
        (!ptr.is_null()).then(|| unsafe { &mut *ptr.cast::<T>() })
    }
}

/// Like [`DataType`], for objects that point at something the VM does not
/// own and that outlives it (configuration memory): nothing to allocate
/// when one is made, nothing to free when it is collected.
pub struct ConfRefType<T> {
    raw: mrb_data_type,
    refers_to: PhantomData<*const T>,
}

// SAFETY: the table only holds a static name.
unsafe impl<T> Sync for ConfRefType<T> {}

impl<T> ConfRefType<T> {
    pub const fn new(name: &'static CStr) -> Self {
        ConfRefType { raw: mrb_data_type { struct_name: name.as_ptr(), dfree: None }, refers_to: PhantomData }
    }

    /// Makes `obj` (an instance of a data class) point at `target`, which
    /// must outlive the VM.
    pub fn set(&'static self, mrb: Mrb, obj: mrb_value, target: *mut T) -> Result<(), RubyError> {
        // SAFETY: reads the tag of a value.
        if unsafe { mrbsys_type(obj) } as u32 != mrb_vtype_MRB_TT_CDATA {
            return Err(RubyError::new("TypeError", format!("{} is not a data object", mrb.class_name(obj))));
        }
        // SAFETY: obj is a data object, so its payload is an RData.
        let current_type = unsafe { (*mrbsys_ptr(obj).cast::<RData>()).type_ };
        if !current_type.is_null() && !core::ptr::eq(current_type, &self.raw) {
            return Err(RubyError::new("TypeError", format!("{} holds other data", mrb.class_name(obj))));
        }
        // SAFETY: obj is a data object of this type or still empty; what it
        // pointed at before is not ours to free.
        unsafe { mrbsys_data_init(obj, target.cast(), &self.raw) };
        Ok(())
    }

    /// What `obj` points at; `None` when it is not one of ours or was never
    /// initialized.
    pub fn get(&'static self, mrb: Mrb, obj: mrb_value) -> Option<*mut T> {
        // SAFETY: live VM; returns NULL unless obj is a data object of this type.
        let ptr = unsafe { mrb_data_check_get_ptr(mrb.as_ptr(), obj, &self.raw) };
        (!ptr.is_null()).then_some(ptr.cast::<T>())
    }
}

unsafe extern "C" fn free_boxed<T>(_mrb: *mut mrb_state, ptr: *mut c_void) {
    if !ptr.is_null() {
        // SAFETY: mruby calls dfree once per object, with the pointer
        // `DataType` stored, which came from Box::into_raw.
        drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
    }
}

/// Makes instances of `class` data objects (so `new` + `initialize` can
/// attach Rust values).
pub(crate) fn make_data_class(class: *mut RClass) {
    // SAFETY: class is a live class being defined.
    unsafe { mrbsys_set_instance_tt(class, mrb_vtype_MRB_TT_CDATA as i32) }
}

/// Defines class `name` under `outer` with superclass `superclass`, or
/// returns the existing one (so a reopen never raises "superclass mismatch").
pub(crate) fn define_class_under(mrb: Mrb, outer: *mut RClass, name: &CStr, superclass: *mut RClass) -> *mut RClass {
    let path = match outer == mrb.object_class() {
        true => name.to_string_lossy().into_owned(),
        false => format!("{}::{}", class_path(mrb, outer), name.to_string_lossy()),
    };
    if let Some(existing) = mrb.class_get(&path) {
        return existing;
    }
    // SAFETY: live VM; outer and superclass are live; name is NUL-terminated
    // and not yet defined under outer, so this cannot raise.
    unsafe { mrb_define_class_under(mrb.as_ptr(), outer, name.as_ptr(), superclass) }
}

fn class_path(mrb: Mrb, class: *mut RClass) -> String {
    // SAFETY: live VM; class is live; mrb_class_name returns a VM-owned name.
    let name = unsafe { mrb_class_name(mrb.as_ptr(), class) };
    // SAFETY: NULL or NUL-terminated.
    String::from_utf8_lossy(unsafe { crate::vm::value::cstr_bytes(name) }).into_owned()
}

/// A class that must exist (defined at init).
pub fn class(mrb: Mrb, path: &str) -> Result<*mut RClass, RubyError> {
    mrb.class_get(path).ok_or_else(|| RubyError::new("NameError", format!("uninitialized constant {path}")))
}

/// A String argument; TypeError with CRuby's message otherwise.
pub fn str_arg<'a>(mrb: Mrb, value: mrb_value) -> Result<&'a [u8], RubyError> {
    mrb.str_bytes(value).ok_or_else(|| {
        RubyError::new("TypeError", format!("no implicit conversion of {} into String", implicit_name(mrb, value)))
    })
}

/// How CRuby names a value in "no implicit conversion" messages.
fn implicit_name(mrb: Mrb, value: mrb_value) -> String {
    if mrb.is_nil(value) {
        return String::from("nil");
    }
    // SAFETY: reads the tag of a value.
    if unsafe { mrbsys_true_p(value) } {
        return String::from("true");
    }
    // SAFETY: reads the tag of a value.
    if unsafe { mrbsys_false_p(value) } {
        return String::from("false");
    }
    mrb.class_name(value)
}

/// A String argument, or a Symbol's name.
pub fn arg_name(mrb: Mrb, value: mrb_value) -> Result<Vec<u8>, RubyError> {
    if let Some(sym) = mrb.to_sym(value) {
        return Ok(mrb.sym_name(sym).to_vec());
    }
    Ok(str_arg(mrb, value)?.to_vec())
}

/// The block passed to the running method (nil without one).
pub fn block_arg(mrb: Mrb) -> mrb_value {
    let mut rest: *const mrb_value = core::ptr::null();
    let mut count: mrb_int = 0;
    let mut block = mrb.nil();
    // SAFETY: live VM, inside a method call; "*&" accepts any arguments, so
    // this does not raise.
    unsafe { mrb_get_args(mrb.as_ptr(), c"*&".as_ptr(), &mut rest, &mut count, &mut block) };
    block
}

/// Calls `block` with `args`; an exception (or a `break`) it raises comes
/// back as the error to raise again once Rust values are dropped.
pub fn yield_block(mrb: Mrb, block: mrb_value, args: &[mrb_value]) -> RubyResult {
    mrb.protect(|mrb| {
        // SAFETY: inside mrb_protect_error; block is a Proc from the caller's
        // arguments; args outlive the call.
        unsafe { mrb_yield_argv(mrb.as_ptr(), block, args.len() as mrb_int, args.as_ptr()) }
    })
    .map_err(reraise)
}

/// Defines the gems in a fresh VM.
pub fn init(mrb: Mrb) {
    process::init(mrb);
    json::init(mrb);
    regexp::init(mrb);
    match_data::init(mrb);
    digest::init(mrb);
    env::init(mrb);
    secure_random::init(mrb);
    string::init(mrb);
}
