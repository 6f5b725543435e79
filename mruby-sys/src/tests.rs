//! The struct layouts bindgen saw must be the ones the C compiler (and so
//! libmruby.a) uses; a mismatch in the `-D` defines would show up here.
use super::*;
use std::mem::{offset_of, size_of};

#[test]
fn struct_sizes_match_the_c_compiler() {
    // SAFETY: the shim functions only return sizeof/offsetof constants.
    unsafe {
        assert_eq!(size_of::<mrb_value>(), mrbsys_sizeof_mrb_value());
        assert_eq!(size_of::<mrb_state>(), mrbsys_sizeof_mrb_state());
        assert_eq!(size_of::<mrb_callinfo>(), mrbsys_sizeof_mrb_callinfo());
        assert_eq!(size_of::<mrb_parser_state>(), mrbsys_sizeof_mrb_parser_state());
        assert_eq!(size_of::<mrb_ccontext>(), mrbsys_sizeof_mrb_ccontext());
        assert_eq!(size_of::<RString>(), mrbsys_sizeof_RString());
        assert_eq!(size_of::<RProc>(), mrbsys_sizeof_RProc());
        assert_eq!(size_of::<mrb_data_type>(), mrbsys_sizeof_mrb_data_type());
        assert_eq!(offset_of!(mrb_state, exc), mrbsys_offsetof_mrb_state_exc());
        assert_eq!(offset_of!(mrb_state, globals), mrbsys_offsetof_mrb_state_globals());
    }
}

#[test]
fn word_boxing_makes_a_value_one_word() {
    assert_eq!(size_of::<mrb_value>(), size_of::<usize>());
}

fn sym(mrb: *mut mrb_state, name: &str) -> mrb_sym {
    // SAFETY: mrb is a live state; the name is passed with its length.
    unsafe { mrb_intern(mrb, name.as_ptr().cast(), name.len()) }
}

#[test]
fn globals_count_tracks_set_and_remove() {
    // SAFETY: a private VM, opened and closed in this test.
    unsafe {
        let mrb = mrb_open();
        assert!(!mrb.is_null());
        let before = mrbsys_globals_count(mrb);
        mrb_gv_set(mrb, sym(mrb, "$mruby_sys_test_a"), mrbsys_int_value(mrb, 1));
        mrb_gv_set(mrb, sym(mrb, "$mruby_sys_test_b"), mrbsys_int_value(mrb, 2));
        assert_eq!(mrbsys_globals_count(mrb), before + 2);
        mrb_gv_set(mrb, sym(mrb, "$mruby_sys_test_a"), mrbsys_int_value(mrb, 3));
        assert_eq!(mrbsys_globals_count(mrb), before + 2);
        mrb_gv_remove(mrb, sym(mrb, "$mruby_sys_test_a"));
        assert_eq!(mrbsys_globals_count(mrb), before + 1);
        mrb_close(mrb);
    }
}

#[test]
fn evaluates_ruby() {
    // SAFETY: a private VM, opened and closed in this test.
    unsafe {
        let mrb = mrb_open();
        let code = "[1, 2, 3].map { |x| x * 2 }.inject(:+)";
        let value = mrb_load_nstring(mrb, code.as_ptr().cast(), code.len());
        assert!(mrbsys_exc(mrb).is_null());
        assert_eq!(mrbsys_integer(value), 12);
        mrb_close(mrb);
    }
}
