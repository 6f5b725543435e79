//! `mruby_memory_limit`: the VM's allocator counts the bytes it holds and
//! refuses an allocation that would pass the cap. mruby then runs a full GC
//! and retries once; if that does not free enough it raises
//! `NoMemoryError` (its preallocated one), which ends the script like any
//! exception. After such a run the VM is collected again and malloc gives
//! the freed memory back to the kernel, so the worker shrinks to its usual
//! size and serves the next request.
//!
//! The count is what malloc really holds for the VM (`malloc_usable_size`
//! of each block), not what was asked for. Memory allocated by our Rust code
//! for the script (regexps, JSON parsing) is outside the count.

use core::cell::Cell;
use core::ffi::{c_char, c_void, CStr};

use mruby_sys::{mrb_state, mrbsys_current_location};
use nix::libc;

/// Cap used until the configuration sets one (`mruby_memory_limit`).
pub const DEFAULT_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// One VM's allocation account; `mrb->allocf_ud` points at it.
pub struct MemoryAccount {
    /// Bytes malloc holds for the VM now.
    used: Cell<usize>,
    /// The cap; `usize::MAX` for `off`.
    limit: Cell<usize>,
    /// Set when an allocation was refused; taken by [`take_refusal`].
    refused: Cell<bool>,
    /// Where the script was at the first refusal: file (from the VM's debug
    /// info, alive as long as the script's bytecode) and line.
    refused_at: Cell<Option<(*const c_char, i32)>>,
}

impl MemoryAccount {
    pub fn new() -> Box<MemoryAccount> {
        Box::new(MemoryAccount {
            used: Cell::new(0),
            limit: Cell::new(DEFAULT_LIMIT_BYTES),
            refused: Cell::new(false),
            refused_at: Cell::new(None),
        })
    }

    pub fn set_limit(&self, bytes: usize) {
        self.limit.set(if bytes == 0 { usize::MAX } else { bytes });
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }

    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    fn refuse(&self, mrb: *mut mrb_state) -> *mut c_void {
        if !self.refused.replace(true) {
            let mut file: *const c_char = core::ptr::null();
            let mut line: i32 = 0;
            // SAFETY: mrb is the live state allocating; the call only reads
            // its frames and debug info (no allocation).
            let found = !mrb.is_null() && unsafe { mrbsys_current_location(mrb, &mut file, &mut line) };
            self.refused_at.set(found.then_some((file, line)));
        }
        core::ptr::null_mut()
    }
}

/// The allocator given to `mrb_open_allocf`: realloc semantics (`size` 0
/// frees), counting every block with its usable size.
pub(super) unsafe extern "C" fn counting_allocf(
    mrb: *mut mrb_state,
    block: *mut c_void,
    size: usize,
    ud: *mut c_void,
) -> *mut c_void {
    // SAFETY: ud is the VM's boxed MemoryAccount, which outlives the state.
    let account = unsafe { &*(ud as *const MemoryAccount) };
    // SAFETY: block is null or a live block this allocator returned.
    let old = if block.is_null() { 0 } else { unsafe { libc::malloc_usable_size(block) } };
    if size == 0 {
        account.used.set(account.used.get() - old);
        // SAFETY: as above; mruby never uses a block after freeing it.
        unsafe { libc::free(block) };
        return core::ptr::null_mut();
    }
    if account.used.get() - old + size > account.limit.get() {
        return account.refuse(mrb);
    }
    // SAFETY: realloc of a block we own (or a fresh allocation).
    let grown = unsafe { libc::realloc(block, size) };
    if grown.is_null() {
        return grown;
    }
    // SAFETY: grown is the live block just returned by realloc.
    let new = unsafe { libc::malloc_usable_size(grown) };
    account.used.set(account.used.get() - old + new);
    grown
}

/// The account of the VM `mrb` (`None` for a VM not opened by `Vm::open`).
pub(super) fn account<'a>(mrb: *mut mrb_state) -> Option<&'a MemoryAccount> {
    // SAFETY: mrb is a live state; allocf/allocf_ud are set by mrb_open_allocf.
    unsafe {
        // every VM of the module is opened with counting_allocf (Vm::open)
        let state = &*mrb;
        if state.allocf_ud.is_null() {
            return None;
        }
        Some(&*(state.allocf_ud as *const MemoryAccount))
    }
}

/// If an allocation was refused during the run that just failed with
/// `NoMemoryError`: the log line for it, naming where the script was.
pub(super) fn explain_refusal(mrb: *mut mrb_state, exception_class: &str) -> Option<String> {
    let account = account(mrb)?;
    if !account.refused.get() || exception_class != "NoMemoryError" {
        return None;
    }
    let location = account.refused_at.get().map(|(file, line)| {
        // SAFETY: file is NUL-terminated debug info of bytecode still alive.
        let file = unsafe { CStr::from_ptr(file) }.to_string_lossy();
        format!("{file}:{line}")
    });
    Some(format!(
        "{}: memory limit exceeded: the VM may hold {} MB (mruby_memory_limit) (NoMemoryError)",
        location.as_deref().unwrap_or("(unknown)"),
        account.limit.get() / (1024 * 1024)
    ))
}

/// At the end of an outermost run: after a refused allocation, forgets the
/// run's locals, collects the VM and gives the freed memory back to the
/// kernel, so the worker shrinks back before the next request.
#[cold]
pub(super) fn recover_after_refusal(mrb: *mut mrb_state) {
    let Some(account) = account(mrb) else {
        return;
    };
    if !account.refused.replace(false) {
        return;
    }
    account.refused_at.set(None);
    // SAFETY: live VM, no run in progress (outermost entry just ended).
    unsafe {
        mruby_sys::mrbsys_clear_root_stack(mrb);
        mruby_sys::mrb_full_gc(mrb);
        libc::malloc_trim(0);
    }
}

/// Whether the VM refused an allocation since the last recovery.
#[inline]
pub(super) fn refused(mrb: *mut mrb_state) -> bool {
    account(mrb).is_some_and(|account| account.refused.get())
}
