//! The worker ↔ supervisor protocol: one line per message, fixed fields,
//! parsed strictly (anything else is refused and logged).
//!
//! Worker to supervisor:
//! - `A <tag> <kind> <uid> <gid> <docroot>`: a runner of `kind` for the site
//!   whose document root is `docroot`, owned by `uid:gid`. `tag` (a u32)
//!   comes back in the answer.
//! - `R <runner>`: the request that was handed `runner` has ended.
//! - `K <runner>`: it ended badly (502, 504, aborted): kill the runner and
//!   everything it started rather than hand it out again.
//!
//! Supervisor to worker:
//! - `OK <tag> <runner> <pid> <uid> <hit|spawned|queued> <socket>`
//! - `ERR <tag> <status> <reason>` (`status` is the HTTP status to answer).

use std::path::PathBuf;

/// Longest line either side accepts (a document root is at most 1024 bytes).
pub const MAX_LINE: usize = 1200;
/// Longest document root.
pub const MAX_DOCROOT: usize = 1024;
/// Longest kind name (`.php`, `cgi`, `ruby`).
pub const MAX_KIND: usize = 16;

/// A parsed worker message.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Acquire { tag: u32, kind: String, uid: u32, gid: u32, docroot: PathBuf },
    Release { runner: u64 },
    Discard { runner: u64 },
}

fn number<T: std::str::FromStr>(field: Option<&str>, what: &'static str) -> Result<T, String> {
    let field = field.ok_or_else(|| format!("missing {what}"))?;
    if field.is_empty() || field.len() > 20 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid {what}"));
    }
    field.parse().map_err(|_| format!("invalid {what}"))
}

/// Parses one line (without its `\n`).
pub fn parse(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_LINE {
        return Err(String::from("line too long"));
    }
    let text = std::str::from_utf8(line).map_err(|_| String::from("not UTF-8"))?;
    if text.chars().any(|c| c.is_control()) {
        return Err(String::from("control character"));
    }
    let (verb, rest) = text.split_once(' ').ok_or_else(|| String::from("no fields"))?;
    match verb {
        "A" => {
            let mut fields = rest.splitn(5, ' ');
            let tag = number(fields.next(), "tag")?;
            let kind = fields.next().ok_or("missing kind")?;
            if kind.is_empty()
                || kind.len() > MAX_KIND
                || !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
            {
                return Err(String::from("invalid kind"));
            }
            let uid = number(fields.next(), "uid")?;
            let gid = number(fields.next(), "gid")?;
            let docroot = fields.next().ok_or("missing document root")?;
            check_docroot_syntax(docroot)?;
            Ok(Request::Acquire { tag, kind: kind.to_string(), uid, gid, docroot: PathBuf::from(docroot) })
        }
        "R" | "K" => {
            if rest.contains(' ') {
                return Err(String::from("extra fields"));
            }
            let runner = number(Some(rest), "runner")?;
            Ok(if verb == "R" { Request::Release { runner } } else { Request::Discard { runner } })
        }
        _ => Err(String::from("unknown verb")),
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

/// How a runner was found for a request (`$tenant_spawn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawn {
    Hit,
    Spawned,
    Queued,
}

impl Spawn {
    pub fn as_str(self) -> &'static str {
        match self {
            Spawn::Hit => "hit",
            Spawn::Spawned => "spawned",
            Spawn::Queued => "queued",
        }
    }
}

/// The `OK` answer.
pub fn ok_reply(tag: u32, runner: u64, pid: i32, uid: u32, spawn: Spawn, socket: &std::path::Path) -> Vec<u8> {
    format!("OK {tag} {runner} {pid} {uid} {} {}\n", spawn.as_str(), socket.display()).into_bytes()
}

/// The `ERR` answer; the reason is a short fixed phrase.
pub fn err_reply(tag: u32, status: u16, reason: &str) -> Vec<u8> {
    format!("ERR {tag} {status} {reason}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_parses() {
        assert_eq!(
            parse(b"A 7 .php 1001 1002 /srv/a b/htdocs"),
            Ok(Request::Acquire {
                tag: 7,
                kind: ".php".into(),
                uid: 1001,
                gid: 1002,
                docroot: PathBuf::from("/srv/a b/htdocs")
            })
        );
        assert!(parse(b"A 7 .php 1001 1002 /srv/site/").is_ok());
    }

    #[test]
    fn release_parses() {
        assert_eq!(parse(b"R 42"), Ok(Request::Release { runner: 42 }));
        assert_eq!(parse(b"K 42"), Ok(Request::Discard { runner: 42 }));
        assert!(parse(b"R 42 1").is_err());
        assert!(parse(b"R -1").is_err());
    }

    #[test]
    fn malformed_is_refused() {
        for bad in [
            &b""[..],
            b"A",
            b"X 1 2",
            b"A x .php 1 1 /a",
            b"A 1 .PHP 1 1 /a",
            b"A 1 .php -1 1 /a",
            b"A 1 .php 1 1 relative",
            b"A 1 .php 1 1 /a/../b",
            b"A 1 .php 1 1 /a//b",
            b"A 1 .php 1 1 /a/./b",
            b"A 1 .php 1 1 /a\tb",
            b"A 1 .php 99999999999999999999 1 /a",
            b"A 1 .php 1 1",
            b"A 1 averyveryverylongkind 1 1 /a",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'A'; MAX_LINE + 1]).is_err());
        assert!(parse(b"A 1 .php 1 1 /\xff").is_err());
    }

    #[test]
    fn replies_are_one_line() {
        let ok = ok_reply(3, 9, 1234, 1001, Spawn::Spawned, std::path::Path::new("/run/t/r9.sock"));
        assert_eq!(ok, b"OK 3 9 1234 1001 spawned /run/t/r9.sock\n");
        assert_eq!(err_reply(3, 403, "refused"), b"ERR 3 403 refused\n");
    }
}
