//! `Mrb`: a copyable handle on the live mruby VM with typed helpers, so the
//! rest of the module converts values without raw FFI calls.
//!
//! Every helper here may be called only while the VM is alive, which the
//! handle's constructor makes the caller promise once.

use core::ffi::{c_char, CStr};
use core::ptr::NonNull;

use mruby_sys::*;

pub use super::error::{ErrorKind, RubyError, RubyResult};

/// Copyable handle on a live `mrb_state`.
#[derive(Clone, Copy)]
pub struct Mrb(NonNull<mrb_state>);

impl Mrb {
    /// # Safety
    /// `mrb` must be a live state for as long as the handle is used.
    pub unsafe fn from_ptr(mrb: *mut mrb_state) -> Option<Mrb> {
        NonNull::new(mrb).map(Mrb)
    }

    pub fn as_ptr(self) -> *mut mrb_state {
        self.0.as_ptr()
    }

    pub fn nil(self) -> mrb_value {
        // SAFETY: constructs an immediate value.
        unsafe { mrbsys_nil_value() }
    }

    pub fn bool(self, b: bool) -> mrb_value {
        // SAFETY: constructs an immediate value.
        unsafe { mrbsys_bool_value(b) }
    }

    pub fn int(self, i: i64) -> mrb_value {
        // SAFETY: live VM (handle invariant); may allocate a boxed integer.
        unsafe { mrbsys_int_value(self.as_ptr(), i as mrb_int) }
    }

    pub fn float(self, f: f64) -> mrb_value {
        // SAFETY: live VM (handle invariant).
        unsafe { mrbsys_float_value(self.as_ptr(), f) }
    }

    /// A new Ruby String holding a copy of `bytes`.
    pub fn str(self, bytes: &[u8]) -> mrb_value {
        // SAFETY: live VM; mruby copies `len` bytes from `ptr`.
        unsafe { mrb_str_new(self.as_ptr(), bytes.as_ptr().cast(), bytes.len() as mrb_int) }
    }

    pub fn sym(self, name: &str) -> mrb_sym {
        // SAFETY: live VM; the name is passed with its length.
        unsafe { mrb_intern(self.as_ptr(), name.as_ptr().cast(), name.len()) }
    }

    /// The symbol named `name` if it already exists; never creates one
    /// (symbols are never freed: request data must not become symbols).
    pub fn existing_sym(self, name: &[u8]) -> Option<mrb_sym> {
        // SAFETY: live VM; looks the name up without interning it.
        let sym = unsafe { mrb_intern_check(self.as_ptr(), name.as_ptr().cast(), name.len()) };
        (sym != 0).then_some(sym)
    }

    pub fn sym_value(self, name: &str) -> mrb_value {
        // SAFETY: immediate value from an interned symbol.
        unsafe { mrbsys_symbol_value(self.sym(name)) }
    }

    /// The name of a symbol.
    pub fn sym_name(self, sym: mrb_sym) -> &'static [u8] {
        let mut len: mrb_int = 0;
        // SAFETY: live VM; symbol names live as long as the VM (static for us).
        unsafe {
            let ptr = mrb_sym_name_len(self.as_ptr(), sym, &mut len);
            if ptr.is_null() {
                return b"";
            }
            core::slice::from_raw_parts(ptr.cast(), len as usize)
        }
    }

    pub fn is_nil(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_nil_p(v) }
    }

    pub fn truthy(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_test(v) }
    }

    pub fn is_string(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_string_p(v) }
    }

    pub fn is_array(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_array_p(v) }
    }

    pub fn is_hash(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_hash_p(v) }
    }

    pub fn is_integer(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_integer_p(v) }
    }

    pub fn is_symbol(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_symbol_p(v) }
    }

    pub fn is_float(self, v: mrb_value) -> bool {
        // SAFETY: reads the tag of a value.
        unsafe { mrbsys_float_p(v) }
    }

    pub fn to_int(self, v: mrb_value) -> Option<i64> {
        // SAFETY: reads an integer only after checking the tag.
        self.is_integer(v).then(|| unsafe { mrbsys_integer(v) as i64 })
    }

    pub fn to_float(self, v: mrb_value) -> Option<f64> {
        // SAFETY: reads a float only after checking the tag.
        self.is_float(v).then(|| unsafe { mrbsys_float(v) })
    }

    pub fn to_sym(self, v: mrb_value) -> Option<mrb_sym> {
        // SAFETY: reads a symbol only after checking the tag.
        self.is_symbol(v).then(|| unsafe { mrbsys_symbol(v) })
    }

    /// The bytes of a String value; `None` for other types. The slice is
    /// valid until the string is modified or collected, so callers copy it
    /// before running more Ruby.
    pub fn str_bytes<'a>(self, v: mrb_value) -> Option<&'a [u8]> {
        if !self.is_string(v) {
            return None;
        }
        // SAFETY: v is a String; RSTRING_PTR/LEN describe its live buffer.
        unsafe {
            let len = mrbsys_str_len(v) as usize;
            if len == 0 {
                return Some(&[]);
            }
            Some(core::slice::from_raw_parts(mrbsys_str_ptr(v).cast(), len))
        }
    }

    /// `obj.to_s`, with any exception it raises turned into an `Err`.
    pub fn to_s(self, v: mrb_value) -> Result<mrb_value, mrb_value> {
        if self.is_string(v) {
            return Ok(v);
        }
        self.protect(|mrb| {
            // SAFETY: called inside mrb_protect_error, which catches a raise.
            unsafe { mrb_obj_as_string(mrb.as_ptr(), v) }
        })
    }

    /// Calls `method` on `recv` with `args`, catching exceptions.
    pub fn call(self, recv: mrb_value, method: &str, args: &[mrb_value]) -> Result<mrb_value, mrb_value> {
        let sym = self.sym(method);
        self.protect(|mrb| {
            // SAFETY: inside mrb_protect_error; args outlive the call.
            unsafe { mrb_funcall_argv(mrb.as_ptr(), recv, sym, args.len() as mrb_int, args.as_ptr()) }
        })
    }

    /// Runs `body` under `mrb_protect_error`: an exception raised inside comes
    /// back as `Err(exception)` instead of unwinding through Rust frames.
    pub fn protect<F: FnMut(Mrb) -> mrb_value>(self, mut body: F) -> Result<mrb_value, mrb_value> {
        struct Frame<'a> {
            mrb: Mrb,
            body: &'a mut dyn FnMut(Mrb) -> mrb_value,
        }
        unsafe extern "C" fn trampoline(_mrb: *mut mrb_state, userdata: *mut core::ffi::c_void) -> mrb_value {
            // SAFETY: userdata is the Frame below, alive for the whole call.
            let frame = unsafe { &mut *(userdata as *mut Frame) };
            (frame.body)(frame.mrb)
        }
        let mut frame = Frame { mrb: self, body: &mut body };
        let mut failed: mrb_bool = false;
        // a call from Rust into Ruby outside a script run is a run of its own
        let _budget = super::cpu_limit::RunGuard::enter(self);
        // mruby 3.3 fails any call made while an exception is pending (e.g.
        // `message` of the exception being reported): hold it aside meanwhile.
        // SAFETY: live VM; reads the pending-exception slot.
        let pending = unsafe { mrbsys_exc(self.as_ptr()) };
        // SAFETY: live VM; the trampoline only touches `frame`.
        let result = unsafe {
            mrbsys_clear_exc(self.as_ptr());
            let result =
                mrb_protect_error(self.as_ptr(), Some(trampoline), (&mut frame as *mut Frame).cast(), &mut failed);
            if !pending.is_null() {
                mrbsys_set_exc(self.as_ptr(), mrbsys_obj_value(pending.cast()));
            }
            result
        };
        if failed {
            Err(result)
        } else {
            Ok(result)
        }
    }

    pub fn ary_new(self) -> mrb_value {
        // SAFETY: live VM.
        unsafe { mrb_ary_new(self.as_ptr()) }
    }

    pub fn ary_push(self, ary: mrb_value, v: mrb_value) {
        // SAFETY: live VM; ary is an Array created by the caller.
        unsafe { mrb_ary_push(self.as_ptr(), ary, v) }
    }

    pub fn ary_len(self, ary: mrb_value) -> usize {
        if !self.is_array(ary) {
            return 0;
        }
        // SAFETY: ary is an Array.
        unsafe { mrbsys_ary_len(ary) as usize }
    }

    pub fn ary_ref(self, ary: mrb_value, i: usize) -> mrb_value {
        // SAFETY: live VM; mrb_ary_ref bounds-checks and returns nil outside.
        unsafe { mrbsys_ary_ref(self.as_ptr(), ary, i as mrb_int) }
    }

    pub fn hash_new(self) -> mrb_value {
        // SAFETY: live VM.
        unsafe { mrb_hash_new(self.as_ptr()) }
    }

    pub fn hash_set(self, hash: mrb_value, key: mrb_value, v: mrb_value) {
        // SAFETY: live VM; hash is a Hash created by the caller.
        unsafe { mrb_hash_set(self.as_ptr(), hash, key, v) }
    }

    pub fn hash_keys(self, hash: mrb_value) -> mrb_value {
        // SAFETY: live VM; hash is a Hash.
        unsafe { mrb_hash_keys(self.as_ptr(), hash) }
    }

    pub fn hash_get(self, hash: mrb_value, key: mrb_value) -> mrb_value {
        // SAFETY: live VM; hash is a Hash. A key's #hash may raise in theory;
        // callers pass Strings and Symbols only.
        unsafe { mrb_hash_get(self.as_ptr(), hash, key) }
    }

    /// Class name of a value, for messages.
    pub fn class_name(self, v: mrb_value) -> String {
        // SAFETY: live VM; returns a NUL-terminated name owned by the VM.
        unsafe {
            let name = mrb_obj_classname(self.as_ptr(), v);
            if name.is_null() {
                return String::from("?");
            }
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }

    /// `inspect` of a value as a Rust string, for logs.
    pub fn inspect(self, v: mrb_value) -> String {
        match self.call(v, "inspect", &[]) {
            Ok(s) => self.str_bytes(s).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
            Err(_) => String::from("?"),
        }
    }

    /// A global variable's value (nil when unset).
    pub fn gv_get(self, name: &str) -> mrb_value {
        // SAFETY: live VM.
        unsafe { mrb_gv_get(self.as_ptr(), self.sym(name)) }
    }

    pub fn gv_set(self, name: &str, v: mrb_value) {
        // SAFETY: live VM.
        unsafe { mrb_gv_set(self.as_ptr(), self.sym(name), v) }
    }

    pub fn gv_remove(self, sym: mrb_sym) {
        // SAFETY: live VM; removing an absent global is a no-op.
        unsafe { mrb_gv_remove(self.as_ptr(), sym) }
    }

    /// How many globals exist, in O(1).
    pub fn globals_count(self) -> usize {
        // SAFETY: live VM (layout checked by mruby-sys's tests).
        unsafe { mrbsys_globals_count(self.as_ptr()) }
    }

    /// The symbols of every global variable.
    pub fn global_symbols(self) -> Vec<mrb_sym> {
        // SAFETY: live VM; Kernel#global_variables does not raise.
        let list = unsafe { mrb_f_global_variables(self.as_ptr(), self.nil()) };
        (0..self.ary_len(list)).filter_map(|i| self.to_sym(self.ary_ref(list, i))).collect()
    }

    /// `mrb_gc_arena_save` (a macro reading one field; read here rather
    /// than through a C call, as every script run does it).
    #[inline]
    pub fn arena_save(self) -> i32 {
        // SAFETY: live VM.
        unsafe { (*self.as_ptr()).gc.arena_idx }
    }

    /// Runs `body`, then drops every arena entry it left (values it
    /// returned included: the result must not hold Ruby objects).
    pub fn arena_scope<R>(self, body: impl FnOnce() -> R) -> R {
        let arena = self.arena_save();
        let result = body();
        self.arena_restore(arena);
        result
    }

    /// `mrb_gc_arena_restore` (a macro writing one field).
    #[inline]
    pub fn arena_restore(self, idx: i32) {
        // SAFETY: live VM; idx came from arena_save.
        unsafe { (*self.as_ptr()).gc.arena_idx = idx }
    }

    /// The pending exception, if a run left one.
    #[inline]
    pub fn pending_exception(self) -> Option<mrb_value> {
        // SAFETY: live VM; exc is either NULL or a live object.
        let exc = unsafe { (*self.as_ptr()).exc };
        // SAFETY: exc is non-null here.
        (!exc.is_null()).then(|| unsafe { mrbsys_obj_value(exc.cast()) })
    }

    #[inline]
    pub fn clear_exception(self) {
        // SAFETY: live VM.
        unsafe { (*self.as_ptr()).exc = core::ptr::null_mut() }
    }

    /// Protects a value from the GC until `gc_unregister`.
    pub fn gc_register(self, v: mrb_value) {
        // SAFETY: live VM.
        unsafe { mrb_gc_register(self.as_ptr(), v) }
    }

    pub fn gc_unregister(self, v: mrb_value) {
        // SAFETY: live VM.
        unsafe { mrb_gc_unregister(self.as_ptr(), v) }
    }

    pub fn object_class(self) -> *mut RClass {
        // SAFETY: live VM.
        unsafe { mrbsys_object_class(self.as_ptr()) }
    }

    pub fn top_self(self) -> mrb_value {
        // SAFETY: live VM.
        unsafe { mrbsys_top_self(self.as_ptr()) }
    }

    /// Defines (or reopens) a top-level class.
    pub fn define_class(self, name: &CStr) -> *mut RClass {
        // SAFETY: live VM; name is NUL-terminated.
        unsafe { mrb_define_class(self.as_ptr(), name.as_ptr(), self.object_class()) }
    }

    /// Defines (or reopens) a class under `outer`.
    pub(crate) fn define_class_under(self, outer: *mut RClass, name: &CStr) -> *mut RClass {
        // SAFETY: live VM; outer is a live class; name is NUL-terminated.
        unsafe { mrb_define_class_under(self.as_ptr(), outer, name.as_ptr(), self.object_class()) }
    }

    pub fn define_module(self, name: &CStr) -> *mut RClass {
        // SAFETY: live VM; name is NUL-terminated.
        unsafe { mrb_define_module(self.as_ptr(), name.as_ptr()) }
    }

    pub(crate) fn define_method(self, class: *mut RClass, name: &CStr, func: mrb_func_t, aspec: mrb_aspec) {
        // SAFETY: live VM; class is live; name is NUL-terminated.
        unsafe { mrb_define_method(self.as_ptr(), class, name.as_ptr(), func, aspec) }
    }

    pub(crate) fn define_class_method(self, class: *mut RClass, name: &CStr, func: mrb_func_t, aspec: mrb_aspec) {
        // SAFETY: live VM; class is live; name is NUL-terminated.
        unsafe { mrb_define_class_method(self.as_ptr(), class, name.as_ptr(), func, aspec) }
    }

    pub(crate) fn define_module_function(self, module: *mut RClass, name: &CStr, func: mrb_func_t, aspec: mrb_aspec) {
        // SAFETY: live VM; module is live; name is NUL-terminated.
        unsafe { mrb_define_module_function(self.as_ptr(), module, name.as_ptr(), func, aspec) }
    }

    pub(crate) fn define_const(self, class: *mut RClass, name: &CStr, v: mrb_value) {
        // SAFETY: live VM; class is live; name is NUL-terminated.
        unsafe { mrb_define_const(self.as_ptr(), class, name.as_ptr(), v) }
    }

    /// Looks up a class or module constant path like `Nginx::Request`.
    pub(crate) fn class_get(self, path: &str) -> Option<*mut RClass> {
        let mut current = self.object_class();
        for part in path.split("::") {
            let sym = self.sym(part);
            // SAFETY: live VM; current is a live class.
            let defined = unsafe { mrb_const_defined(self.as_ptr(), mrbsys_obj_value(current.cast()), sym) };
            if !defined {
                return None;
            }
            // SAFETY: the constant exists (checked above), so mrb_const_get does not raise.
            let v = unsafe { mrb_const_get(self.as_ptr(), mrbsys_obj_value(current.cast()), sym) };
            // SAFETY: reads the tag; only classes/modules are followed.
            let tt = unsafe { mrbsys_type(v) } as u32;
            if tt != mrb_vtype_MRB_TT_CLASS && tt != mrb_vtype_MRB_TT_MODULE {
                return None;
            }
            // SAFETY: v is a class or module object.
            current = unsafe { mrbsys_ptr(v) }.cast();
        }
        Some(current)
    }

    /// A new instance of `class` (no arguments).
    pub(crate) fn new_instance(self, class: *mut RClass) -> Result<mrb_value, mrb_value> {
        self.protect(|mrb| {
            // SAFETY: inside protect; class is live.
            unsafe { mrb_obj_new(mrb.as_ptr(), class, 0, core::ptr::null()) }
        })
    }

    /// Turns an API result into the value returned to mruby, raising on error.
    pub fn finish(self, result: RubyResult) -> mrb_value {
        match result {
            Ok(v) => v,
            Err(err) => super::error::raise(self, err),
        }
    }
}

/// Converts a NUL-terminated C string pointer into bytes (empty for NULL).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
pub unsafe fn cstr_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        return b"";
    }
    // SAFETY: caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p).to_bytes() }
}
