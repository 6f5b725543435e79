//! `mruby_server_context_handler_code`: the server block being parsed, made
//! available to `Nginx::Server#add_listener` while the code runs.

use core::cell::Cell;
use core::ptr;

use ngx::ffi::{ngx_conf_t, ngx_http_core_srv_conf_t};

use crate::vm::{Script, Vm};

/// The configuration context and the server being parsed.
#[derive(Clone, Copy)]
pub struct ServerContext {
    pub cf: *mut ngx_conf_t,
    pub cscf: *mut ngx_http_core_srv_conf_t,
}

thread_local! {
    /// Set only while a `mruby_server_context_handler_code` script runs.
    static CURRENT: Cell<Option<ServerContext>> = const { Cell::new(None) };
}

/// The server being parsed, when called from a server context script.
pub fn current() -> Option<ServerContext> {
    CURRENT.with(Cell::get)
}

/// Clears the context however the run ends.
struct Entered(Option<ServerContext>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Runs `script` now, with `cscf` as the target of `add_listener`.
/// Returns the exception report on failure.
pub fn run(cf: &mut ngx_conf_t, cscf: *mut ngx_http_core_srv_conf_t, vm: &Vm, script: &Script) -> Result<(), String> {
    let proc_ = script.current(vm.mrb(), true).map_err(|err| err.to_string())?;
    let context = ServerContext { cf: ptr::from_mut(cf), cscf };
    let _entered = Entered(CURRENT.with(|c| c.replace(Some(context))));
    vm.mrb().arena_scope(|| crate::vm::run::run(vm.mrb(), proc_).map(|_| ())).map_err(|failure| failure.report)
}
