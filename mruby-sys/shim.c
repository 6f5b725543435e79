/* See shim.h: real functions for mruby's macros and inline functions. */
#include <stddef.h>
#include <mruby.h>
#include <mruby/array.h>
#include <mruby/class.h>
#include <mruby/compile.h>
#include <mruby/data.h>
#include <mruby/debug.h>
#include <mruby/error.h>
#include <mruby/proc.h>
#include <mruby/string.h>
#include <mruby/value.h>
#include <mruby/variable.h>
#include "shim.h"

mrb_value mrbsys_nil_value(void) { return mrb_nil_value(); }
mrb_value mrbsys_true_value(void) { return mrb_true_value(); }
mrb_value mrbsys_false_value(void) { return mrb_false_value(); }
mrb_value mrbsys_bool_value(mrb_bool b) { return mrb_bool_value(b); }
mrb_value mrbsys_int_value(mrb_state *mrb, mrb_int i) { return mrb_int_value(mrb, i); }
mrb_value mrbsys_float_value(mrb_state *mrb, mrb_float f) { return mrb_float_value(mrb, f); }
mrb_value mrbsys_obj_value(void *p) { return mrb_obj_value(p); }
mrb_value mrbsys_symbol_value(mrb_sym sym) { return mrb_symbol_value(sym); }
mrb_value mrbsys_cptr_value(mrb_state *mrb, void *p) { return mrb_cptr_value(mrb, p); }
void *mrbsys_cptr(mrb_value v) { return mrb_cptr(v); }
void *mrbsys_ptr(mrb_value v) { return mrb_ptr(v); }

mrb_bool mrbsys_nil_p(mrb_value v) { return mrb_nil_p(v); }
mrb_bool mrbsys_test(mrb_value v) { return mrb_test(v); }
int mrbsys_type(mrb_value v) { return (int)mrb_type(v); }
mrb_bool mrbsys_string_p(mrb_value v) { return mrb_string_p(v); }
mrb_bool mrbsys_integer_p(mrb_value v) { return mrb_integer_p(v); }
mrb_bool mrbsys_float_p(mrb_value v) { return mrb_float_p(v); }
mrb_bool mrbsys_symbol_p(mrb_value v) { return mrb_symbol_p(v); }
mrb_bool mrbsys_array_p(mrb_value v) { return mrb_array_p(v); }
mrb_bool mrbsys_hash_p(mrb_value v) { return mrb_hash_p(v); }
mrb_bool mrbsys_true_p(mrb_value v) { return mrb_true_p(v); }
mrb_bool mrbsys_false_p(mrb_value v) { return mrb_false_p(v); }
mrb_bool mrbsys_exception_p(mrb_value v) { return mrb_exception_p(v); }
mrb_int mrbsys_integer(mrb_value v) { return mrb_integer(v); }
mrb_float mrbsys_float(mrb_value v) { return mrb_float(v); }
mrb_sym mrbsys_symbol(mrb_value v) { return mrb_symbol(v); }

const char *mrbsys_str_ptr(mrb_value s) { return RSTRING_PTR(s); }
mrb_int mrbsys_str_len(mrb_value s) { return RSTRING_LEN(s); }
mrb_int mrbsys_ary_len(mrb_value a) { return RARRAY_LEN(a); }
mrb_value mrbsys_ary_ref(mrb_state *mrb, mrb_value a, mrb_int i) { (void)mrb; return mrb_ary_ref(mrb, a, i); }

int mrbsys_gc_arena_save(mrb_state *mrb) { return mrb_gc_arena_save(mrb); }
void mrbsys_gc_arena_restore(mrb_state *mrb, int idx) { mrb_gc_arena_restore(mrb, idx); }
struct RClass *mrbsys_class_of(mrb_state *mrb, mrb_value v) { return mrb_class(mrb, v); }
struct RObject *mrbsys_exc(mrb_state *mrb) { return mrb->exc; }
void mrbsys_clear_exc(mrb_state *mrb) { mrb->exc = NULL; }
void mrbsys_set_exc(mrb_state *mrb, mrb_value exc) { mrb->exc = mrb_obj_ptr(exc); }
struct RClass *mrbsys_object_class(mrb_state *mrb) { return mrb->object_class; }
struct RClass *mrbsys_kernel_module(mrb_state *mrb) { return mrb->kernel_module; }
struct RClass *mrbsys_string_class(mrb_state *mrb) { return mrb->string_class; }
void mrbsys_set_instance_tt(struct RClass *c, int tt) { MRB_SET_INSTANCE_TT(c, (enum mrb_vtype)tt); }
void *mrbsys_data_ptr(mrb_value v) { return DATA_PTR(v); }
void mrbsys_data_init(mrb_value v, void *ptr, const struct mrb_data_type *type) { mrb_data_init(v, ptr, type); }

/* mruby 3.3's variable.c keeps globals in a `struct iv_tbl` whose first
 * member is the live entry count (`int size`); the header keeps it opaque.
 * The layout assumption is checked by mruby-sys's tests. */
struct mrbsys_iv_tbl_head { int size; };
size_t mrbsys_globals_count(mrb_state *mrb)
{
  const struct mrbsys_iv_tbl_head *t = (const void *)mrb->globals;
  return t ? (size_t)t->size : 0;
}

size_t mrbsys_sizeof_mrb_value(void) { return sizeof(mrb_value); }
size_t mrbsys_sizeof_mrb_state(void) { return sizeof(mrb_state); }
size_t mrbsys_sizeof_mrb_callinfo(void) { return sizeof(mrb_callinfo); }
size_t mrbsys_sizeof_mrb_parser_state(void) { return sizeof(struct mrb_parser_state); }
size_t mrbsys_sizeof_mrb_ccontext(void) { return sizeof(mrb_ccontext); }
size_t mrbsys_sizeof_RString(void) { return sizeof(struct RString); }
size_t mrbsys_sizeof_RProc(void) { return sizeof(struct RProc); }
size_t mrbsys_sizeof_mrb_data_type(void) { return sizeof(mrb_data_type); }
size_t mrbsys_offsetof_mrb_state_exc(void) { return offsetof(mrb_state, exc); }
size_t mrbsys_offsetof_mrb_state_globals(void) { return offsetof(mrb_state, globals); }

void mrbsys_proc_set_target_class(mrb_state *mrb, struct RProc *proc, struct RClass *target)
{
  proc->upper = NULL;
  MRB_PROC_SET_TARGET_CLASS(proc, target);
}
mrb_value mrbsys_top_self(mrb_state *mrb) { return mrb_top_self(mrb); }

/* ---- Stopping a running script (mruby_cpu_limit) ----
 * The module's CPU-time signal handler calls mrbsys_stop_at_next_instruction
 * (async-signal-safe: two stores). mruby then calls stop_hook before the
 * next instruction it executes, in any frame or Fiber, until the run ends
 * and mrbsys_stop_finish removes it: every instruction raises the same
 * exception, so a rescue clause, `retry` or `ensure` cannot run one
 * instruction of its own and the exception reaches the top. */
static struct {
  mrb_int limit_ms, used_ms;
  mrb_value exc;
  mrb_bool has_exc;
} stop_state;

static void
stop_hook(mrb_state *mrb, const struct mrb_irep *irep, const mrb_code *pc, mrb_value *regs)
{
  (void)irep;
  (void)regs;
  /* The VM records ci->pc only after decoding an instruction, so here it
   * still points after the previous one (or at a jump's source). Point it
   * inside this instruction: the raise is then handled (rescue lookup,
   * backtrace line) as coming from here, not from a spot whose rescue
   * clause would catch it again forever. */
  mrb->c->ci->pc = pc + 1;
  if (!stop_state.has_exc) {
    mrb_value nginx = mrb_const_get(mrb, mrb_obj_value(mrb->object_class), mrb_intern_lit(mrb, "Nginx"));
    struct RClass *cls = mrb_class_get_under(mrb, mrb_class_ptr(nginx), "CPULimitExceeded");
    mrb_value msg = mrb_format(mrb, "CPU time limit exceeded: %i ms used, limit %i ms",
                               stop_state.used_ms, stop_state.limit_ms);
    stop_state.exc = mrb_exc_new_str(mrb, cls, msg);
    mrb_gc_register(mrb, stop_state.exc);
    stop_state.has_exc = TRUE;
  }
  mrb_exc_raise(mrb, stop_state.exc);
}

void mrbsys_stop_at_next_instruction(mrb_state *mrb, mrb_int limit_ms, mrb_int used_ms)
{
  stop_state.limit_ms = limit_ms;
  stop_state.used_ms = used_ms;
  mrb->code_fetch_hook = stop_hook;
}

mrb_bool mrbsys_stop_requested(mrb_state *mrb) { return mrb->code_fetch_hook == stop_hook; }

/* Lets Ruby run again (to render the exception) without ending the stop. */
void mrbsys_stop_pause(mrb_state *mrb) { mrb->code_fetch_hook = NULL; }
void mrbsys_stop_resume(mrb_state *mrb) { mrb->code_fetch_hook = stop_hook; }

void mrbsys_stop_finish(mrb_state *mrb)
{
  mrb->code_fetch_hook = NULL;
  if (stop_state.has_exc) {
    mrb_gc_unregister(mrb, stop_state.exc);
    stop_state.has_exc = FALSE;
  }
}

/* The Ruby source position the VM is at (innermost Ruby frame of the
 * running context), without allocating: for the memory limit's log line,
 * taken when an allocation is refused. */
mrb_bool mrbsys_current_location(mrb_state *mrb, const char **file, int32_t *line)
{
  const mrb_callinfo *ci;

  if (!mrb->c || !mrb->c->ci) return FALSE;
  for (ci = mrb->c->ci; ci >= mrb->c->cibase; ci--) {
    const struct RProc *proc = ci->proc;
    if (proc && !MRB_PROC_CFUNC_P(proc) && proc->body.irep && ci->pc) {
      const mrb_irep *irep = proc->body.irep;
      uint32_t off = (uint32_t)(ci->pc - irep->iseq);
      if (off > 0) off--;
      *file = mrb_debug_get_filename(mrb, irep, off);
      *line = mrb_debug_get_line(mrb, irep, off);
      return *file != NULL;
    }
  }
  return FALSE;
}

/* Forgets the values the last top-level run left in the root context's
 * stack (its local variables), so a GC between runs can free them. */
void mrbsys_clear_root_stack(mrb_state *mrb)
{
  struct mrb_context *c = mrb->root_c;
  if (!c || !c->stbase || mrb->c != c || c->ci != c->cibase) return;
  for (mrb_value *v = c->stbase + 1; v < c->stend; v++) *v = mrb_nil_value();
}

/* The C function behind method `mid` of class `c`, or NULL when it is
 * written in Ruby or missing (to call a core method that is redefined). */
mrb_func_t mrbsys_method_cfunc(mrb_state *mrb, struct RClass *c, mrb_sym mid)
{
  mrb_method_t m = mrb_method_search_vm(mrb, &c, mid);
  if (MRB_METHOD_UNDEF_P(m) || !MRB_METHOD_CFUNC_P(m)) return NULL;
  return MRB_METHOD_CFUNC(m);
}
