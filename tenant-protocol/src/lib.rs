//! The worker ↔ supervisor protocol of the tenant runners: one line per
//! message, fixed fields, parsed strictly (anything else is refused). The
//! nginx module (the worker side) and `ngx-mruby-supervisor` both build and
//! read their lines here, so the two sides cannot drift apart.
//!
//! Worker to supervisor ([`Request`]):
//! - `A <tag> <kind> <uid> <gid> <docroot>`: a runner of `kind` for the site
//!   whose document root is `docroot`, owned by `uid:gid`. `tag` (a u32)
//!   comes back in the answer.
//! - `C <tag> <class> <kind> <uid> <gid> <docroot>`: the same, for a
//!   request in resource class `class` (issue 10): the supervisor moves the
//!   runner into the class's group before it answers, and back to its own
//!   group when it is given back (`R` or `K`). Such a runner is not kept
//!   by the worker for later requests.
//! - `R <runner> <served>`: the worker gives `runner` back, idle; it served
//!   `served` requests (one at a time) since it was handed over. A worker
//!   may keep a runner for its next requests of the same owner, site and
//!   kind instead of giving it back after each (no round trip per request),
//!   up to the answer's budget, and gives it back when asked (`G`).
//! - `K <runner>`: its request ended badly (502, 504, aborted): kill the
//!   runner and everything it started rather than hand it out again.
//! - `B <runner>`: the answer to `G` when the runner is busy with a request:
//!   it goes back (`R` or `K`) when that request ends.
//! - `M <tag> <controller> <group> <pid>`: `Cgroup#attach(pid)` of an
//!   operator's script (issue 10): move runner `pid` into the group `group`
//!   of the `Cgroup` API (one level below `resource_cgroup_root`) in the
//!   hierarchy of `controller` (`cpu`, `cpuacct`, `memory`, `blkio`). The
//!   supervisor builds the path itself and accepts only a pid that is one
//!   of its own runners.
//! - `H <tag> <pid>`: `Cgroup#detach(pid)`: move runner `pid` back to its
//!   own group.
//!
//! Supervisor to worker ([`Reply`]):
//! - `OK <tag> <runner> <pid> <uid> <hit|spawned|queued> <budget> <socket>`:
//!   `budget` is how many requests the runner may still serve before it is
//!   recycled (`tenant_max_requests`; 0: no limit).
//! - `ERR <tag> <status> <reason>` (`status` is the HTTP status to answer;
//!   for `M`/`H`, 403 refused, 500 failed).
//! - `DONE <tag>`: the `M` or `H` line of that tag was carried out.
//! - `G <runner>`: give `runner` back now if it is kept idle (`R`), else
//!   say so (`B`) and give it back when its request ends: another request
//!   needs it, or it has died.

pub mod held;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Longest line either side accepts (a document root is at most 1024 bytes).
pub const MAX_LINE: usize = 1200;
/// Longest document root.
pub const MAX_DOCROOT: usize = 1024;
/// Longest kind name (`.php`, `cgi`, `ruby`).
pub const MAX_KIND: usize = 16;
/// Longest resource class name.
pub const MAX_CLASS: usize = 32;
/// Longest `Cgroup` API group name.
pub const MAX_GROUP: usize = 64;
/// The hierarchies a `Cgroup` API group may be named in (`M` lines).
pub const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];

/// A worker's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `class`: the request's resource class (`C` line), if any.
    Acquire {
        tag: u32,
        kind: String,
        uid: u32,
        gid: u32,
        docroot: PathBuf,
        class: Option<String>,
    },
    Release {
        runner: u64,
        served: u64,
    },
    Discard {
        runner: u64,
    },
    Busy {
        runner: u64,
    },
    /// `M`: move runner `pid` into a `Cgroup` API group.
    Attach {
        tag: u32,
        controller: String,
        group: String,
        pid: i32,
    },
    /// `H`: move runner `pid` back to its own group.
    Detach {
        tag: u32,
        pid: i32,
    },
}

/// How a runner was found for a request (`$tenant_spawn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spawn {
    #[default]
    Hit,
    Spawned,
    Queued,
}

/// A supervisor's message: the answer to an `A` line, or `G`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok {
        tag: u32,
        runner: u64,
        pid: i32,
        uid: u32,
        spawn: Spawn,
        /// Requests it may still serve (0: no limit).
        budget: u64,
        socket: PathBuf,
    },
    /// `reason` is a short fixed phrase (no newline).
    Err { tag: u32, status: u16, reason: String },
    /// Give the runner back once its request (if any) has ended.
    GiveBack { runner: u64 },
    /// The `M` or `H` line of `tag` was carried out.
    Done { tag: u32 },
}

impl Spawn {
    pub fn as_str(self) -> &'static str {
        match self {
            Spawn::Hit => "hit",
            Spawn::Spawned => "spawned",
            Spawn::Queued => "queued",
        }
    }

    fn parse(text: &str) -> Result<Spawn, String> {
        match text {
            "hit" => Ok(Spawn::Hit),
            "spawned" => Ok(Spawn::Spawned),
            "queued" => Ok(Spawn::Queued),
            _ => Err(String::from("invalid spawn")),
        }
    }
}

/// A decimal number, digits only (no sign, no spaces), at most 20 of them.
fn number<T: std::str::FromStr>(field: Option<&str>, what: &'static str) -> Result<T, String> {
    let field = field.ok_or_else(|| format!("missing {what}"))?;
    if field.is_empty() || field.len() > 20 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid {what}"));
    }
    field.parse().map_err(|_| format!("invalid {what}"))
}

/// The line as text: bounded, UTF-8, no control character.
fn text_of(line: &[u8]) -> Result<&str, String> {
    if line.len() > MAX_LINE {
        return Err(String::from("line too long"));
    }
    let text = std::str::from_utf8(line).map_err(|_| String::from("not UTF-8"))?;
    if text.chars().any(|c| c.is_control()) {
        return Err(String::from("control character"));
    }
    Ok(text)
}

/// A resource class name: 1 to 32 of `[A-Za-z0-9_-]` starting with a
/// letter (never an owner's group, which is named by uid).
fn check_class(class: &str) -> Result<(), String> {
    let ok = class.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && class.len() <= MAX_CLASS
        && class.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(String::from("invalid class"))
    }
}

/// A `Cgroup` API group name, as far as the line is concerned: 1 to 64 of
/// `[A-Za-z0-9._-]` starting with a letter (the supervisor applies the
/// module's full rule again).
fn check_group(group: &str) -> Result<(), String> {
    let ok = group.len() <= MAX_GROUP
        && group.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(String::from("invalid group"))
    }
}

fn check_controller(controller: &str) -> Result<(), String> {
    if CONTROLLERS.contains(&controller) {
        Ok(())
    } else {
        Err(String::from("invalid controller"))
    }
}

/// A pid: 1 to i32::MAX.
fn pid_of(field: Option<&str>) -> Result<i32, String> {
    let pid: i32 = number(field, "pid")?;
    if pid < 1 {
        return Err(String::from("invalid pid"));
    }
    Ok(pid)
}

fn check_kind(kind: &str) -> Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(String::from("invalid kind"))
    }
}

/// An absolute, normalised path: no `.`/`..` components, no `//`, no
/// trailing `/` (except `/` itself, which is refused later as root-owned).
fn check_docroot_syntax(docroot: &str) -> Result<(), String> {
    if docroot.is_empty() || docroot.len() > MAX_DOCROOT || !docroot.starts_with('/') {
        return Err(String::from("document root is not an absolute path"));
    }
    let trimmed = docroot.strip_suffix('/').unwrap_or(docroot);
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(String::from("document root is not a normalised path"));
    }
    Ok(())
}

impl Request {
    /// Parses one line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let text = text_of(line)?;
        let (verb, rest) = text.split_once(' ').ok_or_else(|| String::from("no fields"))?;
        match verb {
            "A" | "C" => {
                let mut fields = rest.splitn(if verb == "C" { 6 } else { 5 }, ' ');
                let tag = number(fields.next(), "tag")?;
                let class = if verb == "C" {
                    let class = fields.next().ok_or("missing class")?;
                    check_class(class)?;
                    Some(class.to_string())
                } else {
                    None
                };
                let kind = fields.next().ok_or("missing kind")?;
                check_kind(kind)?;
                let uid = number(fields.next(), "uid")?;
                let gid = number(fields.next(), "gid")?;
                let docroot = fields.next().ok_or("missing document root")?;
                check_docroot_syntax(docroot)?;
                Ok(Request::Acquire { tag, kind: kind.to_string(), uid, gid, docroot: PathBuf::from(docroot), class })
            }
            "R" => {
                let mut fields = rest.split(' ');
                let runner = number(fields.next(), "runner")?;
                let served = number(fields.next(), "served")?;
                if fields.next().is_some() {
                    return Err(String::from("extra fields"));
                }
                Ok(Request::Release { runner, served })
            }
            "K" | "B" => {
                if rest.contains(' ') {
                    return Err(String::from("extra fields"));
                }
                let runner = number(Some(rest), "runner")?;
                Ok(if verb == "K" { Request::Discard { runner } } else { Request::Busy { runner } })
            }
            "M" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                let [tag, controller, group, pid] = fields[..] else {
                    return Err(String::from("wrong number of fields"));
                };
                check_controller(controller)?;
                check_group(group)?;
                Ok(Request::Attach {
                    tag: number(Some(tag), "tag")?,
                    controller: controller.to_string(),
                    group: group.to_string(),
                    pid: pid_of(Some(pid))?,
                })
            }
            "H" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                let [tag, pid] = fields[..] else {
                    return Err(String::from("wrong number of fields"));
                };
                Ok(Request::Detach { tag: number(Some(tag), "tag")?, pid: pid_of(Some(pid))? })
            }
            _ => Err(String::from("unknown verb")),
        }
    }

    /// The line, `\n` included. A document root with a control byte (a
    /// newline would end the line and start another message) or over
    /// [`MAX_DOCROOT`] bytes, or an invalid kind, is not sent at all.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        match self {
            Request::Acquire { tag, kind, uid, gid, docroot, class } => {
                check_kind(kind)?;
                let root = docroot.as_os_str().as_bytes();
                if root.len() > MAX_DOCROOT {
                    return Err(String::from("document root too long"));
                }
                if root.iter().any(|&b| b < 0x20 || b == 0x7f) {
                    return Err(String::from("control character in the document root"));
                }
                let mut line = match class {
                    None => format!("A {tag} {kind} {uid} {gid} ").into_bytes(),
                    Some(class) => {
                        check_class(class)?;
                        format!("C {tag} {class} {kind} {uid} {gid} ").into_bytes()
                    }
                };
                line.extend_from_slice(root);
                line.push(b'\n');
                Ok(line)
            }
            Request::Release { runner, served } => Ok(format!("R {runner} {served}\n").into_bytes()),
            Request::Discard { runner } => Ok(format!("K {runner}\n").into_bytes()),
            Request::Busy { runner } => Ok(format!("B {runner}\n").into_bytes()),
            Request::Attach { tag, controller, group, pid } => {
                check_controller(controller)?;
                check_group(group)?;
                if *pid < 1 {
                    return Err(String::from("invalid pid"));
                }
                Ok(format!("M {tag} {controller} {group} {pid}\n").into_bytes())
            }
            Request::Detach { tag, pid } => {
                if *pid < 1 {
                    return Err(String::from("invalid pid"));
                }
                Ok(format!("H {tag} {pid}\n").into_bytes())
            }
        }
    }

    /// An `A` line's request, from the worker's raw document root bytes.
    pub fn acquire(tag: u32, kind: &str, uid: u32, gid: u32, docroot: &[u8]) -> Request {
        Request::Acquire {
            tag,
            kind: kind.to_string(),
            uid,
            gid,
            docroot: PathBuf::from(OsStr::from_bytes(docroot)),
            class: None,
        }
    }

    /// The same for a request in resource class `class` (`C` line).
    pub fn acquire_in_class(tag: u32, kind: &str, uid: u32, gid: u32, docroot: &[u8], class: Option<&str>) -> Request {
        match Request::acquire(tag, kind, uid, gid, docroot) {
            Request::Acquire { tag, kind, uid, gid, docroot, .. } => {
                Request::Acquire { tag, kind, uid, gid, docroot, class: class.map(str::to_string) }
            }
            other => other,
        }
    }
}

impl Reply {
    /// The tag of the `A` line this answers (none for `G`).
    pub fn tag(&self) -> Option<u32> {
        match self {
            Reply::Ok { tag, .. } | Reply::Err { tag, .. } | Reply::Done { tag } => Some(*tag),
            Reply::GiveBack { .. } => None,
        }
    }

    /// Parses one line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<Reply, String> {
        let text = text_of(line)?;
        let (verb, rest) = text.split_once(' ').ok_or_else(|| String::from("no fields"))?;
        match verb {
            "OK" => {
                let mut fields = rest.splitn(7, ' ');
                let tag = number(fields.next(), "tag")?;
                let runner = number(fields.next(), "runner")?;
                let pid = number(fields.next(), "pid")?;
                let uid = number(fields.next(), "uid")?;
                let spawn = Spawn::parse(fields.next().ok_or("missing spawn")?)?;
                let budget = number(fields.next(), "budget")?;
                let socket = fields.next().ok_or("missing socket")?;
                if !socket.starts_with('/') {
                    return Err(String::from("socket is not an absolute path"));
                }
                Ok(Reply::Ok { tag, runner, pid, uid, spawn, budget, socket: PathBuf::from(socket) })
            }
            "ERR" => {
                let mut fields = rest.splitn(3, ' ');
                let tag = number(fields.next(), "tag")?;
                let status = number(fields.next(), "status")?;
                let reason = fields.next().unwrap_or("").to_string();
                Ok(Reply::Err { tag, status, reason })
            }
            "G" | "DONE" => {
                if rest.contains(' ') {
                    return Err(String::from("extra fields"));
                }
                Ok(if verb == "G" {
                    Reply::GiveBack { runner: number(Some(rest), "runner")? }
                } else {
                    Reply::Done { tag: number(Some(rest), "tag")? }
                })
            }
            _ => Err(String::from("unknown verb")),
        }
    }

    /// The line, `\n` included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok { tag, runner, pid, uid, spawn, budget, socket } => {
                let mut line = format!("OK {tag} {runner} {pid} {uid} {} {budget} ", spawn.as_str()).into_bytes();
                line.extend_from_slice(socket.as_os_str().as_bytes());
                line.push(b'\n');
                line
            }
            Reply::Err { tag, status, reason } => {
                let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                format!("ERR {tag} {status} {reason}\n").into_bytes()
            }
            Reply::GiveBack { runner } => format!("G {runner}\n").into_bytes(),
            Reply::Done { tag } => format!("DONE {tag}\n").into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(line: Vec<u8>) -> Vec<u8> {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        line[..line.len() - 1].to_vec()
    }

    #[test]
    fn acquire_parses() {
        assert_eq!(
            Request::parse(b"A 7 .php 1001 1002 /srv/a b/htdocs"),
            Ok(Request::Acquire {
                tag: 7,
                kind: ".php".into(),
                uid: 1001,
                gid: 1002,
                docroot: PathBuf::from("/srv/a b/htdocs"),
                class: None
            })
        );
        assert!(Request::parse(b"A 7 .php 1001 1002 /srv/site/").is_ok());
        assert_eq!(
            Request::parse(b"C 8 heavy cgi 1001 1002 /srv/a b"),
            Ok(Request::Acquire {
                tag: 8,
                kind: "cgi".into(),
                uid: 1001,
                gid: 1002,
                docroot: PathBuf::from("/srv/a b"),
                class: Some("heavy".into())
            })
        );
        // a uid-like name would be an owner's group: refused like a path
        for bad in [
            &b"C 8 he/avy cgi 1 1 /a"[..],
            b"C 8 .. cgi 1 1 /a",
            b"C 8  cgi 1 1 /a",
            b"C 8 heavy",
            b"C 8 2003 cgi 1 1 /a",
        ] {
            assert!(Request::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let line = Request::acquire_in_class(3, "cgi", 1, 1, b"/a b", Some("small")).encode().expect("encodes");
        assert_eq!(line, b"C 3 small cgi 1 1 /a b\n");
        assert!(Request::acquire_in_class(3, "cgi", 1, 1, b"/a", Some("a b")).encode().is_err());
    }

    #[test]
    fn release_parses() {
        assert_eq!(Request::parse(b"R 42 3"), Ok(Request::Release { runner: 42, served: 3 }));
        assert_eq!(Request::parse(b"K 42"), Ok(Request::Discard { runner: 42 }));
        assert!(Request::parse(b"R 42").is_err());
        assert!(Request::parse(b"R 42 1 1").is_err());
        assert!(Request::parse(b"R 42 -1").is_err());
        assert!(Request::parse(b"K 42 1").is_err());
        assert_eq!(Request::parse(b"B 42"), Ok(Request::Busy { runner: 42 }));
        assert!(Request::parse(b"B 42 1").is_err());
        assert!(Request::parse(b"R -1 1").is_err());
    }

    #[test]
    fn attach_and_detach_parse() {
        assert_eq!(
            Request::parse(b"M 5 cpu web.1 4242"),
            Ok(Request::Attach { tag: 5, controller: "cpu".into(), group: "web.1".into(), pid: 4242 })
        );
        assert_eq!(Request::parse(b"H 6 4242"), Ok(Request::Detach { tag: 6, pid: 4242 }));
        for bad in [
            &b"M 5 cpu web"[..],
            b"M 5 cpu web 1 2",
            b"M 5 pids web 1",
            b"M 5 cpu ../x 1",
            b"M 5 cpu a/b 1",
            b"M 5 cpu 1234.1 1",
            b"M 5 cpu web 0",
            b"M 5 cpu web -1",
            b"M 5 cpu web 2147483648",
            b"M 5 cpu  1",
            b"H 6",
            b"H 6 0",
            b"H 6 1 2",
        ] {
            assert!(Request::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let attach = Request::Attach { tag: 1, controller: "memory".into(), group: "x".into(), pid: 7 };
        assert_eq!(attach.encode().expect("encodes"), b"M 1 memory x 7\n");
        for unsendable in [
            Request::Attach { tag: 1, controller: "memory".into(), group: "a b".into(), pid: 7 },
            Request::Attach { tag: 1, controller: "memory\nR 1 1".into(), group: "x".into(), pid: 7 },
            Request::Attach { tag: 1, controller: "cpu".into(), group: "x".into(), pid: 0 },
            Request::Detach { tag: 1, pid: -4 },
        ] {
            assert!(unsendable.encode().is_err(), "{unsendable:?}");
        }
        assert_eq!(Reply::parse(b"DONE 9"), Ok(Reply::Done { tag: 9 }));
        assert_eq!(Reply::Done { tag: 9 }.encode(), b"DONE 9\n");
        assert_eq!(Reply::Done { tag: 9 }.tag(), Some(9));
        assert!(Reply::parse(b"DONE").is_err() && Reply::parse(b"DONE 1 2").is_err());
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            &b""[..],
            b"A",
            b"X 1 2",
            b"A x .php 1 1 /a",
            b"A 1 .PHP 1 1 /a",
            b"A 1 .php -1 1 /a",
            b"A 1 .php +1 1 /a",
            b"A 1 .php 1 1 relative",
            b"A 1 .php 1 1 /a/../b",
            b"A 1 .php 1 1 /a//b",
            b"A 1 .php 1 1 /a/./b",
            b"A 1 .php 1 1 /a\tb",
            b"A 1 .php 99999999999999999999 1 /a",
            b"A 1 .php 4294967296 1 /a",
            b"A 1 .php 1 1",
            b"A 1 averyveryverylongkind 1 1 /a",
        ] {
            assert!(Request::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(Request::parse(&[b'A'; MAX_LINE + 1]).is_err());
        assert!(Request::parse(b"A 1 .php 1 1 /\xff").is_err());
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::acquire(1, ".php", 1001, 1002, b"/srv/sites/a.example/htdocs"),
            Request::acquire(u32::MAX, "cgi", u32::MAX - 1, 1000, b"/srv/with space/x"),
            Request::acquire(3, "ruby", 1000, 1000, b"/"),
            Request::Release { runner: 0, served: 1 },
            Request::Release { runner: u64::MAX, served: u64::MAX },
            Request::Discard { runner: 77 },
            Request::Busy { runner: 78 },
            Request::Attach { tag: 2, controller: "blkio".into(), group: "a-b_c.d".into(), pid: i32::MAX },
            Request::Detach { tag: u32::MAX, pid: 1 },
        ] {
            let line = request.encode().expect("encodes");
            assert_eq!(Request::parse(&strip(line)), Ok(request.clone()), "{request:?}");
        }
    }

    #[test]
    fn unsendable_requests_are_not_encoded() {
        // a newline would end the A line and smuggle an R line for another runner
        assert!(Request::acquire(1, ".php", 1001, 1001, b"/srv/a\nR 5").encode().is_err());
        assert!(Request::acquire(1, ".php", 1001, 1001, b"/srv/a\x7f").encode().is_err());
        assert!(Request::acquire(1, ".php", 1001, 1001, &[b'/'; MAX_DOCROOT + 1]).encode().is_err());
        assert!(Request::acquire(1, ".PHP", 1001, 1001, b"/srv/a").encode().is_err());
        assert!(Request::acquire(1, "a b", 1001, 1001, b"/srv/a").encode().is_err());
        // not UTF-8: sent, and refused by the supervisor's parser
        let line = Request::acquire(1, ".php", 1001, 1001, b"/srv/\xfe").encode().expect("encodes");
        assert!(Request::parse(&strip(line)).is_err());
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ok {
                tag: 3,
                runner: 9,
                pid: 1234,
                uid: 1001,
                spawn: Spawn::Spawned,
                budget: 1000,
                socket: PathBuf::from("/run/t/r9.sock"),
            },
            Reply::Ok {
                tag: 0,
                runner: u64::MAX,
                pid: i32::MAX,
                uid: 0,
                spawn: Spawn::Hit,
                budget: u64::MAX,
                socket: PathBuf::from("/s"),
            },
            Reply::Ok {
                tag: 1,
                runner: 1,
                pid: 1,
                uid: 1,
                spawn: Spawn::Queued,
                budget: 0,
                socket: PathBuf::from("/a b/c"),
            },
            Reply::GiveBack { runner: 12 },
            Reply::Err { tag: 3, status: 403, reason: String::from("refused") },
            Reply::Err { tag: 4, status: 503, reason: String::from("queue timeout") },
            Reply::Err { tag: 5, status: 500, reason: String::new() },
        ] {
            assert_eq!(Reply::parse(&strip(reply.encode())), Ok(reply.clone()), "{reply:?}");
        }
    }

    #[test]
    fn replies_are_one_line() {
        let ok = Reply::Ok {
            tag: 3,
            runner: 9,
            pid: 1234,
            uid: 1001,
            spawn: Spawn::Spawned,
            budget: 7,
            socket: PathBuf::from("/run/t/r9.sock"),
        };
        assert_eq!(ok.encode(), b"OK 3 9 1234 1001 spawned 7 /run/t/r9.sock\n");
        assert_eq!(Reply::GiveBack { runner: 9 }.encode(), b"G 9\n");
        let err = Reply::Err { tag: 3, status: 403, reason: String::from("no\nway") };
        assert_eq!(err.encode(), b"ERR 3 403 no way\n");
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [
            &b""[..],
            b"OK",
            b"OK 1 2 3 4 hit",
            b"OK 1 2 3 4 hit /s",
            b"OK 1 2 3 4 cold 0 /s",
            b"OK 1 2 -3 4 hit 0 /s",
            b"OK 1 2 3 4 hit 0 relative",
            b"OK 1 2 3 4 hit -1 /s",
            b"G",
            b"G x",
            b"G 1 2",
            b"ERR x 403 refused",
            b"ERR 1 70000 refused",
            b"NO 1 2",
        ] {
            assert!(Reply::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
