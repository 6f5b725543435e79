//! The mruby VM: one per `http{}` configuration, created while the config is
//! parsed (so `mruby_init` state reaches workers through fork), closed when
//! the configuration's pool is destroyed (reload or exit). Compiling,
//! running and resuming scripts, the typed value handle, the one FFI error
//! type, and the globals baseline.
//!
//! May import: nothing of the crate (it is the bottom layer); the API is
//! defined by the installer `Vm::open` receives, so `vm/` never imports
//! `api/`, and whom a script runs for is `host/`'s business.

pub mod compile;
pub mod cpu_limit;
pub mod error;
pub mod memory;
pub mod run;
pub mod value;

use std::cell::RefCell;
use std::collections::HashSet;

use mruby_sys::{mrb_close, mrb_open_allocf, mrb_sym};

pub use compile::{CompileError, Script, ScriptSource};
pub use error::{RubyError, RubyResult};
pub use value::Mrb;

/// The globals a regexp match sets; always per request.
const MATCH_GLOBALS: [&str; 14] = ["$~", "$&", "$`", "$'", "$+", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];

/// Globals that existed when init/init_worker finished: they are shared
/// by every request; any other global belongs to the request that made it.
/// `symbols` is the set of their names that still exist: removing one
/// (`Nginx.remove_global_variable`, through [`remove_global`]) takes it out
/// of the set and the count, so "a request made globals" is exactly
/// `globals_count() != count` and checking it stays O(1).
#[derive(Default)]
struct GlobalsBaseline {
    /// `globals_count()` when the baseline was marked, less the removed ones
    /// (read on every VM entry of a request, so not behind the RefCell).
    count: core::cell::Cell<usize>,
    symbols: RefCell<HashSet<mrb_sym>>,
}

/// One mruby interpreter with the nginx API defined in it.
pub struct Vm {
    mrb: Mrb,
    /// Boxed: `mrb->ud` points at it, for [`remove_global`].
    baseline: Box<GlobalsBaseline>,
    /// Requests of this VM that have a globals record right now (`host/globals.rs`).
    pub held_globals: core::cell::Cell<usize>,
    /// The record of the request whose globals are in the VM, or NULL
    /// (`host/globals.rs`; opaque here).
    pub globals_owner: core::cell::Cell<*mut core::ffi::c_void>,
    /// Bytecode that resumes a waiting script's Fiber (see `run::resume`).
    resumer: *mut mruby_sys::RProc,
    /// What the VM's allocator counts (`mruby_memory_limit`); boxed, as
    /// `mrb->allocf_ud` points at it; dropped after `mrb_close`.
    memory: Box<memory::MemoryAccount>,
}

impl Vm {
    /// Opens a VM and defines the Ruby API in it with `install_api`
    /// (`api::install`, given by the configuration code).
    pub fn open(install_api: fn(Mrb) -> Result<(), String>) -> Result<Vm, String> {
        let memory = memory::MemoryAccount::new();
        // SAFETY: returns a fresh state or NULL; the account outlives the
        // state (the Vm drops it after mrb_close).
        let raw =
            unsafe { mrb_open_allocf(Some(memory::counting_allocf), core::ptr::from_ref(&*memory).cast_mut().cast()) };
        // SAFETY: raw is a fresh live state, owned (and closed) by the Vm.
        let mrb = unsafe { Mrb::from_ptr(raw) }.ok_or("mrb_open() failed: out of memory")?;
        install_api(mrb)?;
        cpu_limit::define_exception(mrb)?;
        let resumer =
            compile::compile(mrb, run::RESUMER_CODE.as_bytes(), "(fiber resumer)").map_err(|err| err.to_string())?;
        let vm = Vm {
            mrb,
            baseline: Box::default(),
            resumer,
            held_globals: core::cell::Cell::new(0),
            globals_owner: core::cell::Cell::new(core::ptr::null_mut()),
            memory,
        };
        // SAFETY: live VM; the boxed baseline lives as long as the Vm, which owns the state.
        unsafe { (*mrb.as_ptr()).ud = core::ptr::from_ref(&*vm.baseline).cast_mut().cast() };
        vm.mark_globals_baseline();
        Ok(vm)
    }

    pub fn mrb(&self) -> Mrb {
        self.mrb
    }

    /// `mruby_memory_limit`: the bytes the VM may hold (0: no limit).
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory.set_limit(bytes);
    }

    pub fn resumer(&self) -> *mut mruby_sys::RProc {
        self.resumer
    }

    /// Records the current globals as the ones that persist across requests.
    /// Regexp match globals (`$~`, `$1`...) never persist: an init script's
    /// match must not be readable by requests.
    pub fn mark_globals_baseline(&self) {
        let arena = self.mrb.arena_save();
        for name in MATCH_GLOBALS {
            self.mrb.gv_remove(self.mrb.sym(name));
        }
        let symbols: HashSet<mrb_sym> = self.mrb.global_symbols().into_iter().collect();
        *self.baseline.symbols.borrow_mut() = symbols;
        self.baseline.count.set(self.mrb.globals_count());
        self.mrb.arena_restore(arena);
    }

    /// Whether globals beyond the init-time ones exist (O(1)).
    #[inline]
    pub fn has_request_globals(&self) -> bool {
        self.mrb.globals_count() != self.baseline.count.get()
    }

    /// Removes every global a request created. O(1) when it created none.
    pub fn remove_request_globals(&self) {
        if !self.has_request_globals() {
            return;
        }
        let baseline = self.baseline.symbols.borrow();
        let arena = self.mrb.arena_save();
        for sym in self.mrb.global_symbols() {
            if !baseline.contains(&sym) {
                self.mrb.gv_remove(sym);
            }
        }
        self.mrb.arena_restore(arena);
    }
}

impl Vm {
    /// Takes the request's globals out of the VM while it waits, so that
    /// requests interleaving on one worker never see (or remove) each
    /// other's globals. Returns a GC-registered Hash, or None.
    pub fn stash_request_globals(&self) -> Option<mruby_sys::mrb_value> {
        if !self.has_request_globals() {
            return None;
        }
        let baseline = self.baseline.symbols.borrow();
        let arena = self.mrb.arena_save();
        let stash = self.mrb.hash_new();
        for sym in self.mrb.global_symbols() {
            if baseline.contains(&sym) {
                continue;
            }
            // SAFETY: immediate value from an existing symbol.
            let key = unsafe { mruby_sys::mrbsys_symbol_value(sym) };
            // SAFETY: live VM; reading an existing global.
            let value = unsafe { mruby_sys::mrb_gv_get(self.mrb.as_ptr(), sym) };
            self.mrb.hash_set(stash, key, value);
            self.mrb.gv_remove(sym);
        }
        self.mrb.gc_register(stash);
        self.mrb.arena_restore(arena);
        Some(stash)
    }

    /// Puts stashed globals back before the request's script resumes.
    pub fn restore_request_globals(&self, stash: mruby_sys::mrb_value) {
        let arena = self.mrb.arena_save();
        let keys = self.mrb.hash_keys(stash);
        for i in 0..self.mrb.ary_len(keys) {
            let key = self.mrb.ary_ref(keys, i);
            if let Some(sym) = self.mrb.to_sym(key) {
                // SAFETY: live VM; setting a global from the stash.
                unsafe { mruby_sys::mrb_gv_set(self.mrb.as_ptr(), sym, self.mrb.hash_get(stash, key)) };
            }
        }
        self.mrb.gc_unregister(stash);
        self.mrb.arena_restore(arena);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // the module (and the timer's signal handler) may be unloaded next
        cpu_limit::stop_timer();
        // SAFETY: the Vm owns the state; nothing uses it after the config pool dies.
        unsafe { mrb_close(self.mrb.as_ptr()) }
    }
}

/// Removes global `sym` (`Nginx.remove_global_variable`). An init-time
/// global removed this way is no longer shared: if a request sets it
/// again, it is that request's.
pub fn remove_global(mrb: Mrb, sym: mrb_sym) {
    mrb.gv_remove(sym);
    // SAFETY: mrb->ud is the boxed baseline of the Vm owning this state (set in Vm::open).
    let Some(baseline) = (unsafe { ((*mrb.as_ptr()).ud as *const GlobalsBaseline).as_ref() }) else {
        return;
    };
    if baseline.symbols.try_borrow_mut().is_ok_and(|mut symbols| symbols.remove(&sym)) {
        baseline.count.set(baseline.count.get().saturating_sub(1));
    }
}
