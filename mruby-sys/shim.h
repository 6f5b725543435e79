/* C shim: mruby's API is partly macros and static inline functions, which
 * bindgen cannot bind. Each is wrapped here as a real function. */
#ifndef MRUBY_SYS_SHIM_H
#define MRUBY_SYS_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <mruby.h>

mrb_value mrbsys_nil_value(void);
mrb_value mrbsys_true_value(void);
mrb_value mrbsys_false_value(void);
mrb_value mrbsys_bool_value(mrb_bool b);
mrb_value mrbsys_int_value(mrb_state *mrb, mrb_int i);
mrb_value mrbsys_float_value(mrb_state *mrb, mrb_float f);
mrb_value mrbsys_obj_value(void *p);
mrb_value mrbsys_symbol_value(mrb_sym sym);
mrb_value mrbsys_cptr_value(mrb_state *mrb, void *p);
void *mrbsys_cptr(mrb_value v);
void *mrbsys_ptr(mrb_value v);

mrb_bool mrbsys_nil_p(mrb_value v);
mrb_bool mrbsys_test(mrb_value v);
int mrbsys_type(mrb_value v);
mrb_bool mrbsys_string_p(mrb_value v);
mrb_bool mrbsys_integer_p(mrb_value v);
mrb_bool mrbsys_float_p(mrb_value v);
mrb_bool mrbsys_symbol_p(mrb_value v);
mrb_bool mrbsys_array_p(mrb_value v);
mrb_bool mrbsys_hash_p(mrb_value v);
mrb_bool mrbsys_true_p(mrb_value v);
mrb_bool mrbsys_false_p(mrb_value v);
mrb_bool mrbsys_exception_p(mrb_value v);
mrb_int mrbsys_integer(mrb_value v);
mrb_float mrbsys_float(mrb_value v);
mrb_sym mrbsys_symbol(mrb_value v);

const char *mrbsys_str_ptr(mrb_value s);
mrb_int mrbsys_str_len(mrb_value s);
mrb_int mrbsys_ary_len(mrb_value a);
mrb_value mrbsys_ary_ref(mrb_state *mrb, mrb_value a, mrb_int i);

int mrbsys_gc_arena_save(mrb_state *mrb);
void mrbsys_gc_arena_restore(mrb_state *mrb, int idx);
struct RClass *mrbsys_class_of(mrb_state *mrb, mrb_value v);
struct RObject *mrbsys_exc(mrb_state *mrb);
void mrbsys_clear_exc(mrb_state *mrb);
struct RClass *mrbsys_object_class(mrb_state *mrb);
struct RClass *mrbsys_kernel_module(mrb_state *mrb);
struct RClass *mrbsys_string_class(mrb_state *mrb);
void mrbsys_set_instance_tt(struct RClass *c, int tt);
void *mrbsys_data_ptr(mrb_value v);
void mrbsys_data_init(mrb_value v, void *ptr, const struct mrb_data_type *type);
void mrbsys_set_exc(mrb_state *mrb, mrb_value exc);

/* Number of entries in the global variable table (O(1), for the
 * per-request "did the script create globals?" check). */
size_t mrbsys_globals_count(mrb_state *mrb);

/* sizes as the C compiler sees them, for the layout test */
size_t mrbsys_sizeof_mrb_value(void);
size_t mrbsys_sizeof_mrb_state(void);
size_t mrbsys_sizeof_mrb_callinfo(void);
size_t mrbsys_sizeof_mrb_parser_state(void);
size_t mrbsys_sizeof_mrb_ccontext(void);
size_t mrbsys_sizeof_RString(void);
size_t mrbsys_sizeof_RProc(void);
size_t mrbsys_sizeof_mrb_data_type(void);
size_t mrbsys_offsetof_mrb_state_exc(void);
size_t mrbsys_offsetof_mrb_state_globals(void);

/* Exported by libmruby but declared only in mruby 3.3's private
 * <mruby/internal.h>, which is not meant to be included by users. */
mrb_value mrb_exc_backtrace(mrb_state *mrb, mrb_value exc);
mrb_value mrb_f_global_variables(mrb_state *mrb, mrb_value self);

/* Stopping a running script (mruby_cpu_limit, see shim.c). */
void mrbsys_stop_at_next_instruction(mrb_state *mrb, mrb_int limit_ms, mrb_int used_ms);
mrb_bool mrbsys_stop_requested(mrb_state *mrb);
void mrbsys_stop_pause(mrb_state *mrb);
void mrbsys_stop_resume(mrb_state *mrb);
void mrbsys_stop_finish(mrb_state *mrb);

/* Where the VM is in the script (file and line), allocation-free. */
mrb_bool mrbsys_current_location(mrb_state *mrb, const char **file, int32_t *line);
/* Drops the values a finished top-level run left on the root stack. */
void mrbsys_clear_root_stack(mrb_state *mrb);

#include <mruby/proc.h>
void mrbsys_proc_set_target_class(mrb_state *mrb, struct RProc *proc, struct RClass *target);
mrb_value mrbsys_top_self(mrb_state *mrb);
mrb_func_t mrbsys_method_cfunc(mrb_state *mrb, struct RClass *c, mrb_sym mid);
#endif
