//! The CGI runner (`tenant_cgi on`): this program, exec'd by a confined
//! runner (already the owner, no capabilities, Landlock), serves FastCGI on
//! fd 0 and forks and execs the requested program for each request, the
//! suEXEC case without a setuid wrapper. One request at a time; the
//! program runs in its own process group, which is killed when it is done
//! or when nginx gives up on the request (the connection closes).

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};

use nix::sys::signal::{kill, killpg, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::fastcgi::{self, Request};

/// Runs the CGI runner for the document root in `args[0]`; never returns.
pub fn run(args: &[String]) -> ! {
    let Some(docroot) = args.first().map(PathBuf::from) else {
        eprintln!("cgi runner: no document root");
        std::process::exit(2)
    };
    // a closed FastCGI connection must be an error, not a signal; reset for the programs
    // SAFETY: installs SIG_IGN; no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // SAFETY: fd 0 is the listening socket the supervisor handed over.
    let listener = unsafe { UnixListener::from_raw_fd(0) };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve(stream, &docroot) {
                    eprintln!("cgi runner: {e}");
                }
            }
            Err(e) => {
                eprintln!("cgi runner: accept: {e}");
                std::process::exit(1)
            }
        }
    }
}

/// A response for requests that never reach a program.
fn refuse(stream: &mut UnixStream, id: u16, status: &str) -> Result<(), String> {
    let body = format!("Status: {status}\r\nContent-Type: text/plain\r\n\r\n{status}\n");
    fastcgi::write_records(stream, fastcgi::STDOUT, id, body.as_bytes())
        .and_then(|()| fastcgi::write_records(stream, fastcgi::STDOUT, id, b""))
        .and_then(|()| fastcgi::end_request(stream, id, 0))
        .map_err(|e| format!("write: {e}"))
}

/// The program to run: an absolute path below the document root, with no
/// `..` (Landlock would stop anything else anyway).
fn program_path(request: &Request, docroot: &Path) -> Option<PathBuf> {
    let script = Path::new(std::ffi::OsStr::from_bytes(request.param(b"SCRIPT_FILENAME")?));
    let normal =
        script.is_absolute() && script.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    (normal && script.starts_with(docroot)).then(|| script.to_path_buf())
}

/// The program's environment: the FastCGI parameters, plus the CGI basics.
fn environment(request: &Request) -> Vec<CString> {
    let mut env: Vec<CString> = request
        .params
        .iter()
        .filter(|(name, _)| !name.is_empty() && !name.contains(&b'='))
        .filter_map(|(name, value)| {
            let mut pair = name.clone();
            pair.push(b'=');
            pair.extend_from_slice(value);
            CString::new(pair).ok()
        })
        .collect();
    for (name, default) in [(&b"GATEWAY_INTERFACE"[..], &b"CGI/1.1"[..]), (b"PATH", b"/usr/local/bin:/usr/bin:/bin")] {
        if request.param(name).is_none() {
            let mut pair = name.to_vec();
            pair.push(b'=');
            pair.extend_from_slice(default);
            if let Ok(pair) = CString::new(pair) {
                env.push(pair);
            }
        }
    }
    env
}

fn serve(mut stream: UnixStream, docroot: &Path) -> Result<(), String> {
    let Some(request) = fastcgi::read_request(&mut stream).map_err(|e| format!("reading the request: {e}"))? else {
        return Ok(());
    };
    let Some(program) = program_path(&request, docroot) else {
        return refuse(&mut stream, request.id, "403 Forbidden");
    };
    let program_c = CString::new(program.as_os_str().as_bytes()).map_err(|_| "NUL in SCRIPT_FILENAME")?;
    let env = environment(&request);
    let (stdin_r, stdin_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (stdout_r, stdout_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: single-threaded; the child only sets up descriptors and execs.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            exec_program(&program, &program_c, &env, &stdin_r, &stdout_w);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("fork: {e}")),
    };
    drop(stdin_r);
    drop(stdout_w);
    let outcome = relay(&mut stream, &request, stdin_w, stdout_r, child);
    // whatever the program left behind in its group goes with it
    let _ = killpg(child, Signal::SIGKILL);
    let status = match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) => code as u32,
        _ => 255,
    };
    match outcome {
        Relay::Done => fastcgi::write_records(&mut stream, fastcgi::STDOUT, request.id, b"")
            .and_then(|()| fastcgi::end_request(&mut stream, request.id, status))
            .map_err(|e| format!("write: {e}")),
        Relay::PeerGone => Ok(()),
    }
}

fn exec_program(program: &Path, program_c: &CString, env: &[CString], stdin: &OwnedFd, stdout: &OwnedFd) -> ! {
    let result = (|| -> Result<std::convert::Infallible, String> {
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| format!("setpgid: {e}"))?;
        nix::unistd::dup2(stdin.as_raw_fd(), 0).map_err(|e| format!("dup2: {e}"))?;
        nix::unistd::dup2(stdout.as_raw_fd(), 1).map_err(|e| format!("dup2: {e}"))?;
        // SAFETY: restores the default disposition the runner changed.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(|e| format!("signal: {e}"))?;
        if let Some(dir) = program.parent() {
            std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        }
        nix::unistd::execve(program_c, &[program_c], env).map_err(|e| format!("exec {}: {e}", program.display()))
    })();
    let Err(reason) = result;
    eprintln!("cgi runner: {reason}");
    // SAFETY: ends the child without running the runner's exit handlers.
    unsafe { libc::_exit(127) }
}

enum Relay {
    /// The program closed its output.
    Done,
    /// nginx closed the connection (timeout, client gone): stop at once.
    PeerGone,
}

/// Feeds the body to the program and its output to nginx, watching the
/// FastCGI connection for nginx giving up.
fn relay(stream: &mut UnixStream, request: &Request, stdin: OwnedFd, stdout: OwnedFd, child: Pid) -> Relay {
    for fd in [stdin.as_raw_fd(), stdout.as_raw_fd()] {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    }
    let mut stdin = Some(stdin);
    let mut body_at = 0;
    if request.stdin.is_empty() {
        stdin = None;
    }
    let mut buf = vec![0u8; 65536];
    loop {
        let mut fds = vec![
            libc::pollfd { fd: stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 },
        ];
        if let Some(fd) = &stdin {
            fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
        }
        // SAFETY: fds is a live array of pollfd structs.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let _ = killpg(child, Signal::SIGKILL);
            let _ = kill(child, Signal::SIGKILL);
            return Relay::PeerGone;
        }
        if fds.len() > 2 && fds[2].revents != 0 {
            if let Some(fd) = &stdin {
                // SAFETY: writes the unsent part of the body to our pipe.
                let n = unsafe {
                    libc::write(fd.as_raw_fd(), request.stdin[body_at..].as_ptr().cast(), request.stdin.len() - body_at)
                };
                if n > 0 {
                    body_at += n as usize;
                }
                if n < 0 || body_at >= request.stdin.len() {
                    stdin = None;
                }
            }
        }
        if fds[0].revents != 0 {
            // SAFETY: reads into our buffer from our pipe.
            let n = unsafe { libc::read(stdout.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                return Relay::Done;
            }
            if n > 0 && fastcgi::write_records(stream, fastcgi::STDOUT, request.id, &buf[..n as usize]).is_err() {
                return Relay::PeerGone;
            }
        }
        let _ = stream.flush();
    }
}
