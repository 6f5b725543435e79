//! `mruby_cpu_limit`: a script run that uses more CPU time than its budget
//! is stopped with `Nginx::CPULimitExceeded`, which it cannot rescue away.
//!
//! How, at no cost until a budget is spent:
//! * Each process that runs Ruby (the master for `mruby_init`, each worker)
//!   has one CPU-time timer for its thread (`timer_create` on
//!   `CLOCK_THREAD_CPUTIME_ID`, delivered to the thread with
//!   `SIGEV_THREAD_ID`) that ticks every `tick` of CPU the thread uses
//!   (a tenth of the smallest budget seen, 1 ms to 100 ms).
//! * Entering the VM ([`RunGuard::enter`]) only bumps a run serial and
//!   records the budget; no clock is read and no syscall is made.
//! * The tick handler returns at once unless a run is in progress. At the
//!   first tick of a run it notes the thread's CPU time; at a later tick of
//!   the same run, once the CPU time since then reaches the budget, it
//!   installs mruby's code-fetch hook (two stores). The hook
//!   (`mruby-sys/shim.c`) raises at the next instruction, and at every
//!   instruction after it until the run ends, so no rescue clause, `retry`
//!   or `ensure` gets to run: the exception reaches the top of the run.
//! * The CPU time is counted from the first tick of the run, so the figure
//!   reported can be up to one tick lower than the true one, and a run is
//!   stopped between `budget` and `budget` + two ticks.
//!
//! A long single C call (a huge allocation, a regexp) is not interrupted:
//! the memory cap and Oniguruma's retry limit bound those. Nested VM entries
//! (a header filter run by `send_header` inside a content handler, a call
//! from Rust into Ruby) count toward the run that contains them.

use core::ffi::c_int;
use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

use mruby_sys::{
    mrb_state, mrbsys_stop_at_next_instruction, mrbsys_stop_finish, mrbsys_stop_pause, mrbsys_stop_requested,
    mrbsys_stop_resume,
};
use nix::libc;

use super::value::Mrb;

/// Budget used when the configuration gave none (`mruby_cpu_limit` unset).
pub const DEFAULT_LIMIT_MS: u64 = 5_000;

/// The longest and shortest timer tick.
const MAX_TICK_NS: u64 = 100_000_000;
const MIN_TICK_NS: u64 = 1_000_000;

/// What the tick handler reads: the run in progress on this thread. nginx
/// runs Ruby on one thread per process; the atomics make the sharing with
/// the signal handler (which interrupts that same thread) sound.
struct RunClock {
    /// Nesting of VM entries; 0 outside the VM.
    depth: AtomicU32,
    /// Bumped by every outermost entry.
    serial: AtomicU64,
    /// This run's budget; 0 means unlimited.
    budget_ns: AtomicU64,
    /// The VM the run is in (where the hook goes).
    mrb: AtomicPtr<mrb_state>,
    /// The run whose first tick was seen, and the CPU time then.
    ticked_serial: AtomicU64,
    first_tick_ns: AtomicU64,
    /// The hook is installed for the current run.
    stopping: AtomicBool,
}

static CLOCK: RunClock = RunClock {
    depth: AtomicU32::new(0),
    serial: AtomicU64::new(0),
    budget_ns: AtomicU64::new(0),
    mrb: AtomicPtr::new(core::ptr::null_mut()),
    ticked_serial: AtomicU64::new(u64::MAX),
    first_tick_ns: AtomicU64::new(0),
    stopping: AtomicBool::new(false),
};

/// The timer of this process: armed with this tick (0: no timer yet; reset
/// in a forked worker, which does not inherit timers).
static TIMER_TICK_NS: AtomicU64 = AtomicU64::new(0);
static TIMER_ID: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
/// The process that created `TIMER_ID` (a forked worker has none).
static TIMER_PID: AtomicU32 = AtomicU32::new(0);
/// `on_tick` is this process's handler for the tick signal.
static HANDLER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Where a run's budget comes from (the configuration of whatever the run
/// serves), in milliseconds, 0 for `off`. Set once by the configuration
/// code; without it every run gets [`DEFAULT_LIMIT_MS`].
static BUDGET_SOURCE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the function that tells the budget of the run starting now.
pub fn set_budget_source(source: fn() -> u64) {
    BUDGET_SOURCE.store(source as *mut (), Relaxed);
}

fn current_budget_ms() -> u64 {
    let source = BUDGET_SOURCE.load(Relaxed);
    if source.is_null() {
        return DEFAULT_LIMIT_MS;
    }
    // SAFETY: only `set_budget_source` stores here, always a `fn() -> u64`.
    let source: fn() -> u64 = unsafe { core::mem::transmute::<*mut (), fn() -> u64>(source) };
    source()
}

/// Defines `Nginx::CPULimitExceeded` (an `Exception`, not a
/// `StandardError`, so a bare `rescue` does not even name it), under the
/// `Nginx` class the API installed.
pub fn define_exception(mrb: Mrb) -> Result<(), String> {
    let object = mrb.object_class();
    // SAFETY: immediate value of the Object class pointer.
    let object_value = unsafe { mruby_sys::mrbsys_obj_value(object.cast()) };
    // SAFETY: live VM; reads a constant without raising (checked first).
    let nginx = unsafe {
        let name = mrb.sym("Nginx");
        if !mruby_sys::mrb_const_defined(mrb.as_ptr(), object_value, name) {
            return Err(String::from("the API defined no Nginx class"));
        }
        mruby_sys::mrbsys_ptr(mruby_sys::mrb_const_get(mrb.as_ptr(), object_value, name))
    };
    // SAFETY: live VM; `Nginx` is a class or module, Exception a class.
    unsafe {
        let exception = (*mrb.as_ptr()).eException_class;
        mruby_sys::mrb_define_class_under(mrb.as_ptr(), nginx.cast(), c"CPULimitExceeded".as_ptr(), exception);
    }
    Ok(())
}

/// One VM entry. The outermost one starts a run with the budget of what
/// it serves; dropping it ends the entry (and, outermost, the run: a CPU
/// stop is lifted, and memory is recovered after a refused allocation).
pub struct RunGuard {
    outermost: bool,
    mrb: *mut mrb_state,
}

impl RunGuard {
    #[inline]
    pub fn enter(mrb: Mrb) -> RunGuard {
        let depth = CLOCK.depth.load(Relaxed);
        if depth > 0 {
            // only this thread writes depth; the tick handler only tests it for 0
            CLOCK.depth.store(depth + 1, Relaxed);
            return RunGuard { outermost: false, mrb: mrb.as_ptr() };
        }
        let budget_ns = current_budget_ms().saturating_mul(1_000_000);
        if budget_ns > 0 {
            ensure_timer(budget_ns);
        }
        CLOCK.budget_ns.store(budget_ns, Relaxed);
        CLOCK.mrb.store(mrb.as_ptr(), Relaxed);
        // load + store, not a locked add: only this thread writes, and the
        // tick handler ignores the clock until depth is set below
        CLOCK.serial.store(CLOCK.serial.load(Relaxed).wrapping_add(1), Relaxed);
        // last: the tick handler looks at nothing else while depth is 0 (the
        // fence keeps the compiler from moving the stores above past it; the
        // handler interrupts this thread, so no CPU fence is needed)
        compiler_fence(SeqCst);
        CLOCK.depth.store(1, Relaxed);
        RunGuard { outermost: true, mrb: mrb.as_ptr() }
    }
}

impl Drop for RunGuard {
    #[inline]
    fn drop(&mut self) {
        if !self.outermost {
            CLOCK.depth.store(CLOCK.depth.load(Relaxed) - 1, Relaxed);
            return;
        }
        // first: from here on the tick handler leaves the VM alone (so a
        // plain load and store will do for `stopping`: no locked swap on
        // every run)
        CLOCK.depth.store(0, Relaxed);
        compiler_fence(SeqCst);
        if CLOCK.stopping.load(Relaxed) {
            CLOCK.stopping.store(false, Relaxed);
            // SAFETY: live VM (the guard does not outlive the VM call).
            unsafe { mrbsys_stop_finish(self.mrb) };
        }
        if super::memory::refused(self.mrb) {
            super::memory::recover_after_refusal(self.mrb);
        }
    }
}

/// Runs `render` (turning the exception into a log line, which may call
/// Ruby methods such as `message`) with the stop hook lifted, then puts it
/// back: an enclosing script of the same run must still stop.
pub fn with_stop_lifted<R>(mrb: Mrb, render: impl FnOnce() -> R) -> R {
    // SAFETY: live VM; reads and swaps its code-fetch hook.
    let stopped = unsafe { mrbsys_stop_requested(mrb.as_ptr()) };
    if !stopped {
        return render();
    }
    // SAFETY: as above.
    unsafe { mrbsys_stop_pause(mrb.as_ptr()) };
    let rendered = render();
    // SAFETY: as above.
    unsafe { mrbsys_stop_resume(mrb.as_ptr()) };
    rendered
}

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the thread's CPU clock into `now`; async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The running script has used up its budget (the hook is installed and
/// raises at its next instruction). A loop in Rust that runs many C calls
/// for one Ruby call (every match of a `gsub`) checks it between them.
#[inline]
pub fn budget_spent() -> bool {
    CLOCK.stopping.load(Relaxed)
}

/// The timer's signal handler: only atomics, `clock_gettime` and the
/// two-store hook installation (all async-signal-safe).
extern "C" fn on_tick(_signal: c_int) {
    if CLOCK.depth.load(Relaxed) == 0 || CLOCK.stopping.load(Relaxed) {
        return;
    }
    let budget_ns = CLOCK.budget_ns.load(Relaxed);
    if budget_ns == 0 {
        return;
    }
    let now = thread_cpu_ns();
    let serial = CLOCK.serial.load(Relaxed);
    if CLOCK.ticked_serial.load(Relaxed) != serial {
        CLOCK.ticked_serial.store(serial, Relaxed);
        CLOCK.first_tick_ns.store(now, Relaxed);
        return;
    }
    let used_ns = now.saturating_sub(CLOCK.first_tick_ns.load(Relaxed));
    if used_ns < budget_ns {
        return;
    }
    CLOCK.stopping.store(true, Relaxed);
    let (limit_ms, used_ms) = ((budget_ns / 1_000_000) as i64, (used_ns / 1_000_000) as i64);
    // SAFETY: the VM of the run in progress (depth > 0); two plain stores.
    unsafe { mrbsys_stop_at_next_instruction(CLOCK.mrb.load(Relaxed), limit_ms, used_ms) };
}

/// The signal the timer sends (a real-time signal nginx does not use).
fn tick_signal() -> c_int {
    libc::SIGRTMIN() + 4
}

/// In a freshly forked worker: the parent's timer was not inherited (POSIX
/// timers never are), so the first run creates this process's own.
pub fn forget_inherited_timer() {
    if TIMER_PID.load(Relaxed) == std::process::id() {
        return; // not forked: nginx runs a single process (master_process off)
    }
    TIMER_TICK_NS.store(0, Relaxed);
    TIMER_ID.store(core::ptr::null_mut(), Relaxed);
}

/// Deletes this process's timer and ignores its signal: called when a VM
/// closes, because the module's code (the handler) may be unloaded right
/// after, and a tick must never jump into unmapped code. The next run
/// creates the timer again.
pub fn stop_timer() {
    let timer = TIMER_ID.swap(core::ptr::null_mut(), Relaxed);
    TIMER_TICK_NS.store(0, Relaxed);
    // SAFETY: deletes our own timer and sets the signal's disposition.
    unsafe {
        if !timer.is_null() && TIMER_PID.load(Relaxed) == std::process::id() {
            libc::timer_delete(timer);
        }
        if HANDLER_INSTALLED.swap(false, Relaxed) {
            libc::signal(tick_signal(), libc::SIG_IGN);
        }
    }
}

/// Makes sure this process's timer exists and ticks at least every tenth
/// of `budget_ns`. A syscall only the first time and when a smaller
/// budget shows up.
#[inline]
fn ensure_timer(budget_ns: u64) {
    let tick = (budget_ns / 10).clamp(MIN_TICK_NS, MAX_TICK_NS);
    let current = TIMER_TICK_NS.load(Relaxed);
    if current != 0 && current <= tick {
        return;
    }
    arm_timer(tick);
}

#[cold]
fn arm_timer(tick_ns: u64) {
    // SAFETY: plain libc calls on this process's own signal disposition and
    // timer; every pointer passed is to a local.
    unsafe {
        let mut timer = TIMER_ID.load(Relaxed);
        if timer.is_null() {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_tick as extern "C" fn(c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(tick_signal(), &action, core::ptr::null_mut()) != 0 {
                return give_up();
            }
            HANDLER_INSTALLED.store(true, Relaxed);
            let mut event: libc::sigevent = core::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = tick_signal();
            event.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = core::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut event, &mut id) != 0 {
                return give_up();
            }
            timer = id;
            TIMER_ID.store(timer, Relaxed);
            TIMER_PID.store(std::process::id(), Relaxed);
        }
        let period = libc::timespec { tv_sec: (tick_ns / 1_000_000_000) as _, tv_nsec: (tick_ns % 1_000_000_000) as _ };
        let spec = libc::itimerspec { it_interval: period, it_value: period };
        if libc::timer_settime(timer, 0, &spec, core::ptr::null_mut()) == 0 {
            TIMER_TICK_NS.store(tick_ns, Relaxed);
        }
    }
}

/// No timer can be had (the kernel refused): runs go unlimited rather
/// than retrying the syscalls on every run.
#[cold]
fn give_up() {
    TIMER_TICK_NS.store(1, Relaxed);
}
