//! Compiling scripts to bytecode: at config load (errors fail `nginx -t`
//! with file:line) and again at run time when a non-cached file changed.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};

use mruby_sys::*;

use super::value::{cstr_bytes, Mrb};

/// Where a script's text comes from.
#[derive(Debug, Clone)]
pub enum ScriptSource {
    /// A `.rb` file (absolute path).
    File(PathBuf),
    /// Inline code from a `*_code` directive; the label names its config line.
    Inline { code: String, label: String },
}

/// A compile failure: where and why.
#[derive(Debug)]
pub struct CompileError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

/// What identifies a file version: a change in any field means "edited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        FileStamp::of_c(&c_path)
    }

    /// One plain `stat(2)`: this runs on every request of a file script
    /// without `cache`, so no allocation and no statx probing.
    fn of_c(path: &CStr) -> std::io::Result<FileStamp> {
        let st = nix::sys::stat::stat(path).map_err(std::io::Error::from)?;
        Ok(FileStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        })
    }
}

/// A script compiled to bytecode and kept alive in the VM's GC roots.
pub struct Script {
    pub source: ScriptSource,
    /// The `cache` argument (always true for inline code).
    pub cache: bool,
    compiled: Cell<*mut RProc>,
    stamp: Cell<Option<FileStamp>>,
    /// The file path as a C string, for the per-request `stat`.
    c_path: Option<CString>,
    /// Whether the current bytecode runs in a Fiber (see [`suspendable`]).
    suspendable: Cell<bool>,
}

impl Script {
    /// Reads and compiles a file script.
    pub fn from_file(mrb: Mrb, path: PathBuf, cache: bool) -> Result<Script, CompileError> {
        let stamp = FileStamp::of(&path).map_err(|err| CompileError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot open: {err}"),
        })?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).ok();
        let script = Script {
            source: ScriptSource::File(path),
            cache,
            compiled: Cell::new(core::ptr::null_mut()),
            stamp: Cell::new(Some(stamp)),
            c_path,
            suspendable: Cell::new(false),
        };
        let proc_ = script.compile_source(mrb)?;
        script.compiled.set(proc_);
        Ok(script)
    }

    /// Compiles inline code from a `*_code` directive.
    pub fn from_inline(mrb: Mrb, code: String, label: String) -> Result<Script, CompileError> {
        let script = Script {
            source: ScriptSource::Inline { code, label },
            cache: true,
            compiled: Cell::new(core::ptr::null_mut()),
            stamp: Cell::new(None),
            c_path: None,
            suspendable: Cell::new(false),
        };
        let proc_ = script.compile_source(mrb)?;
        script.compiled.set(proc_);
        Ok(script)
    }

    /// The name used in logs: the file path, or the inline code's label.
    pub fn name(&self) -> String {
        match &self.source {
            ScriptSource::File(path) => path.display().to_string(),
            ScriptSource::Inline { label, .. } => label.clone(),
        }
    }

    /// The bytecode to run. A file script without `cache` (and outside
    /// `mruby_cache on`) is recompiled when its file changed; the old
    /// bytecode is released to the GC, so memory stays flat.
    #[inline]
    pub fn current(&self, mrb: Mrb, scope_cache: bool) -> Result<*mut RProc, CompileError> {
        if self.cache || scope_cache {
            // inline code is always cached
            return Ok(self.compiled.get());
        }
        self.refreshed(mrb)
    }

    /// [`Self::current`] for a file script that is not cached: recompiled
    /// if the file changed.
    #[inline(never)]
    fn refreshed(&self, mrb: Mrb) -> Result<*mut RProc, CompileError> {
        let ScriptSource::File(path) = &self.source else {
            return Ok(self.compiled.get());
        };
        let stamp = self.c_path.as_deref().map_or_else(|| FileStamp::of(path), FileStamp::of_c).map_err(|err| {
            CompileError { file: path.display().to_string(), line: 0, message: format!("cannot open: {err}") }
        })?;
        if self.stamp.get() == Some(stamp) {
            return Ok(self.compiled.get());
        }
        let fresh = self.compile_source(mrb)?;
        let old = self.compiled.replace(fresh);
        self.stamp.set(Some(stamp));
        if !old.is_null() {
            // SAFETY: old is a proc this script registered; unregistering lets GC free it.
            mrb.gc_unregister(unsafe { mrbsys_obj_value(old.cast()) });
        }
        Ok(fresh)
    }

    /// Whether running the bytecode gives a Fiber to resume (the script
    /// uses `Nginx::Async` and may wait) rather than the script's value.
    pub fn suspendable(&self) -> bool {
        self.suspendable.get()
    }

    fn compile_source(&self, mrb: Mrb) -> Result<*mut RProc, CompileError> {
        let (code, name) = match &self.source {
            ScriptSource::File(path) => {
                let code = std::fs::read(path).map_err(|err| CompileError {
                    file: path.display().to_string(),
                    line: 0,
                    message: format!("cannot read: {err}"),
                })?;
                (code, path.display().to_string())
            }
            ScriptSource::Inline { code, label } => (code.clone().into_bytes(), label.clone()),
        };
        let suspendable = suspendable(&code);
        let proc_ = if suspendable { compile(mrb, &fiber_wrapped(&code), &name)? } else { compile(mrb, &code, &name)? };
        self.suspendable.set(suspendable);
        Ok(proc_)
    }
}

/// Parses and generates bytecode for `code`; the proc is GC-registered.
pub fn compile(mrb: Mrb, code: &[u8], filename: &str) -> Result<*mut RProc, CompileError> {
    let error = |line: u32, message: String| CompileError { file: filename.to_owned(), line, message };
    let c_filename = CString::new(filename.replace('\0', "")).map_err(|_| error(0, "bad file name".into()))?;
    let arena = mrb.arena_save();
    // SAFETY: live VM; the context and parser state are freed on every path below.
    let result = unsafe {
        let ctx = mrb_ccontext_new(mrb.as_ptr());
        if ctx.is_null() {
            return Err(error(0, "out of memory".into()));
        }
        mrb_ccontext_filename(mrb.as_ptr(), ctx, c_filename.as_ptr());
        (*ctx).set_capture_errors(true);
        (*ctx).set_no_exec(true);
        let parser = mrb_parse_nstring(mrb.as_ptr(), code.as_ptr().cast(), code.len(), ctx);
        let result = if parser.is_null() {
            Err(error(0, "out of memory while parsing".into()))
        } else if (*parser).nerr > 0 {
            let first = &(*parser).error_buffer[0];
            let message = String::from_utf8_lossy(cstr_bytes(first.message)).into_owned();
            let message =
                if message.starts_with("syntax error") { message } else { format!("syntax error, {message}") };
            Err(error(first.lineno as u32, message))
        } else {
            let proc_ = mrb_generate_code(mrb.as_ptr(), parser);
            if proc_.is_null() {
                let detail = mrb.pending_exception().map(|e| mrb.inspect(e)).unwrap_or_default();
                mrb.clear_exception();
                Err(error(0, format!("code generation failed {detail}")))
            } else {
                mrbsys_proc_set_target_class(mrb.as_ptr(), proc_, mrb.object_class());
                mrb.gc_register(mrbsys_obj_value(proc_.cast()));
                Ok(proc_)
            }
        };
        if !parser.is_null() {
            mrb_parser_free(parser);
        }
        mrb_ccontext_free(mrb.as_ptr(), ctx);
        result
    };
    mrb.arena_restore(arena);
    result
}

impl Script {
    /// Lets the GC free this script's bytecode (for one-shot scripts).
    pub fn release(&self, mrb: Mrb) {
        let proc_ = self.compiled.replace(core::ptr::null_mut());
        if !proc_.is_null() {
            // SAFETY: proc_ was registered by compile(); unregister it once.
            mrb.gc_unregister(unsafe { mrbsys_obj_value(proc_.cast()) });
        }
    }
}

/// A script that mentions `Async` can wait (`Nginx::Async.sleep`,
/// `sub_request`), so it runs in a Fiber; every other script runs directly,
/// sparing the Fiber that made ngx_mruby's handlers slow.
fn suspendable(code: &[u8]) -> bool {
    code.windows(5).any(|w| w == b"Async")
}

/// Running the wrapped code returns a Fiber whose body is the script, as a
/// lambda so that a top-level `return` ends the handler. The first line is
/// kept, so line numbers in errors stay right.
fn fiber_wrapped(code: &[u8]) -> Vec<u8> {
    let mut wrapped = b"Fiber.new(&lambda do; ".to_vec();
    wrapped.extend_from_slice(code);
    wrapped.extend_from_slice(b"\nend)");
    wrapped
}
