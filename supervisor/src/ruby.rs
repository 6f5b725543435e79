//! The Ruby runner (`.rb` under `tenant_runner on`): this program, exec'd
//! by a confined runner, opens one mruby VM for its whole life (one owner,
//! one document root: no Ruby state is ever shared with another owner),
//! serves FastCGI on fd 0 and runs the requested script in that VM for each
//! request. The API (`ruby_prelude.rb`) is built from the FastCGI
//! parameters; there is no nginx in this process to reach into.

use std::ffi::CString;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};

use mruby_sys::*;

use crate::fastcgi::{self, Request};

const PRELUDE: &str = include_str!("ruby_prelude.rb");

/// The runner's VM (single-threaded; open until the process exits).
struct Vm(*mut mrb_state);

impl Vm {
    fn open() -> Result<Vm, String> {
        // SAFETY: plain mruby calls on a VM this function owns.
        unsafe {
            let mrb = mrb_open();
            if mrb.is_null() {
                return Err(String::from("cannot open an mruby VM"));
            }
            let vm = Vm(mrb);
            let process = mrb_define_module(mrb, c"Process".as_ptr());
            mrb_define_module_function(mrb, process, c"uid".as_ptr(), Some(process_uid), 0);
            mrb_define_module_function(mrb, process, c"euid".as_ptr(), Some(process_euid), 0);
            mrb_define_module_function(mrb, process, c"pid".as_ptr(), Some(process_pid), 0);
            vm.eval(PRELUDE.as_bytes(), "ruby_prelude.rb")?;
            Ok(vm)
        }
    }

    /// Runs `code`; the raised exception, inspected, on failure.
    fn eval(&self, code: &[u8], filename: &str) -> Result<mrb_value, String> {
        let name = CString::new(filename).unwrap_or_default();
        // SAFETY: the context is created and freed here; code is read with its length.
        unsafe {
            let cxt = mrb_ccontext_new(self.0);
            mrb_ccontext_filename(self.0, cxt, name.as_ptr());
            let value = mrb_load_nstring_cxt(self.0, code.as_ptr().cast(), code.len(), cxt);
            mrb_ccontext_free(self.0, cxt);
            let exc = mrbsys_exc(self.0);
            if !exc.is_null() {
                mrbsys_clear_exc(self.0);
                let text = mrb_inspect(self.0, mrbsys_obj_value(exc.cast()));
                return Err(self.string(text));
            }
            Ok(value)
        }
    }

    fn string(&self, value: mrb_value) -> String {
        // SAFETY: only called with String values (inspect and __finish results).
        unsafe {
            if !mrbsys_string_p(value) {
                return String::new();
            }
            let bytes = std::slice::from_raw_parts(mrbsys_str_ptr(value) as *const u8, mrbsys_str_len(value) as usize);
            String::from_utf8_lossy(bytes).into_owned()
        }
    }

    fn bytes(&self, value: mrb_value) -> Option<Vec<u8>> {
        // SAFETY: reads a String's bytes while it is alive (arena-protected).
        unsafe {
            mrbsys_string_p(value).then(|| {
                std::slice::from_raw_parts(mrbsys_str_ptr(value) as *const u8, mrbsys_str_len(value) as usize).to_vec()
            })
        }
    }

    fn new_string(&self, bytes: &[u8]) -> mrb_value {
        // SAFETY: mrb_str_new copies the bytes.
        unsafe { mrb_str_new(self.0, bytes.as_ptr().cast(), bytes.len() as mrb_int) }
    }

    fn set_global(&self, name: &std::ffi::CStr, value: mrb_value) {
        // SAFETY: interns a NUL-terminated name and sets the global.
        unsafe { mrb_gv_set(self.0, mrb_intern_cstr(self.0, name.as_ptr()), value) }
    }

    /// `$__ngx_params` (a Hash of the FastCGI parameters) and `$__ngx_body`.
    fn set_request(&self, request: &Request) {
        // SAFETY: builds a Hash of new Strings in this VM.
        unsafe {
            let hash = mrb_hash_new(self.0);
            for (name, value) in &request.params {
                mrb_hash_set(self.0, hash, self.new_string(name), self.new_string(value));
            }
            self.set_global(c"$__ngx_params", hash);
        }
        self.set_global(c"$__ngx_body", self.new_string(&request.stdin));
    }
}

unsafe extern "C" fn process_uid(mrb: *mut mrb_state, _self: mrb_value) -> mrb_value {
    // SAFETY: returns a new Integer in the calling VM.
    unsafe { mrbsys_int_value(mrb, nix::unistd::getuid().as_raw() as mrb_int) }
}

unsafe extern "C" fn process_euid(mrb: *mut mrb_state, _self: mrb_value) -> mrb_value {
    // SAFETY: as above.
    unsafe { mrbsys_int_value(mrb, nix::unistd::geteuid().as_raw() as mrb_int) }
}

unsafe extern "C" fn process_pid(mrb: *mut mrb_state, _self: mrb_value) -> mrb_value {
    // SAFETY: as above.
    unsafe { mrbsys_int_value(mrb, std::process::id() as mrb_int) }
}

/// Runs the Ruby runner for the document root in `args[0]`; never returns.
pub fn run(args: &[String]) -> ! {
    let Some(docroot) = args.first().map(PathBuf::from) else {
        eprintln!("ruby runner: no document root");
        std::process::exit(2)
    };
    let vm = match Vm::open() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("ruby runner: {e}");
            std::process::exit(1)
        }
    };
    // SAFETY: fd 0 is the listening socket the supervisor handed over.
    let listener = unsafe { UnixListener::from_raw_fd(0) };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve(&vm, stream, &docroot) {
                    eprintln!("ruby runner: {e}");
                }
            }
            Err(e) => {
                eprintln!("ruby runner: accept: {e}");
                std::process::exit(1)
            }
        }
    }
}

fn respond(stream: &mut UnixStream, id: u16, response: &[u8]) -> Result<(), String> {
    fastcgi::write_records(stream, fastcgi::STDOUT, id, response)
        .and_then(|()| fastcgi::write_records(stream, fastcgi::STDOUT, id, b""))
        .and_then(|()| fastcgi::end_request(stream, id, 0))
        .map_err(|e| format!("write: {e}"))
}

fn error_response(status: &str) -> Vec<u8> {
    format!("Status: {status}\r\nContent-Type: text/plain\r\n\r\n{status}\n").into_bytes()
}

fn serve(vm: &Vm, mut stream: UnixStream, docroot: &Path) -> Result<(), String> {
    let Some(request) = fastcgi::read_request(&mut stream).map_err(|e| format!("reading the request: {e}"))? else {
        return Ok(());
    };
    let script = request.param(b"SCRIPT_FILENAME").map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)));
    let script = script.filter(|s| {
        s.is_absolute()
            && s.starts_with(docroot)
            && s.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    });
    let Some(script) = script else {
        return respond(&mut stream, request.id, &error_response("403 Forbidden"));
    };
    let code = match std::fs::read(&script) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ruby runner: {}: {e}", script.display());
            return respond(&mut stream, request.id, &error_response("404 Not Found"));
        }
    };
    // SAFETY: the arena index is restored below, after every value of this request is used.
    let arena = unsafe { mrbsys_gc_arena_save(vm.0) };
    vm.set_request(&request);
    let name = script.display().to_string();
    let result = vm
        .eval(b"Nginx.__begin", "(runner)")
        .and_then(|_| vm.eval(&code, &name))
        .and_then(|_| vm.eval(b"Nginx.__finish", "(runner)"))
        .map(|response| vm.bytes(response).unwrap_or_default());
    // SAFETY: as above.
    unsafe { mrbsys_gc_arena_restore(vm.0, arena) };
    match result {
        Ok(response) => respond(&mut stream, request.id, &response),
        Err(exception) => {
            eprintln!("ruby runner: {name}: {exception}");
            respond(&mut stream, request.id, &error_response("500 Internal Server Error"))
        }
    }
}
