//! One blocking question to the supervisor, for an operator's script at
//! worker start (`Cgroup#attach` / `#detach` in `mruby_init_worker`): its
//! own short connection to `supervisor.sock`, not the worker's event-loop
//! link (`link.rs`), so the script has the answer before it goes on.
//! Requests never come here. The supervisor accepts the connection as it
//! accepts the link's (the worker user, a child of this nginx's master).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tenant_protocol::{Reply, Request, MAX_LINE};

/// How long a worker waits for a supervisor that is still starting
/// (the first start: the keeper forks it as the workers start).
const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long the answer may take.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

fn connect() -> Result<UnixStream, String> {
    let path = super::spawn::supervisor_socket()
        .ok_or("no tenant runners in this configuration (tenant_runner), so no supervisor to ask")?;
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        match UnixStream::connect(&path) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if Instant::now() < deadline
                    && matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(format!("cannot connect to the supervisor at {}: {e}", path.display())),
        }
    }
}

/// Sends `request` (an `M` or `H` line) and waits for its answer: `Ok`
/// for `DONE`, the supervisor's reason for `ERR`.
pub fn ask(request: &Request) -> Result<(), String> {
    let line = request.encode()?;
    let mut stream = connect()?;
    let io = |e: std::io::Error| format!("the supervisor did not answer: {e}");
    stream.set_read_timeout(Some(ANSWER_WAIT)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_WAIT)).map_err(io)?;
    stream.write_all(&line).map_err(io)?;
    let mut answer = Vec::new();
    let mut reader = BufReader::new(&stream).take(MAX_LINE as u64 + 1);
    let read = reader.read_until(b'\n', &mut answer).map_err(io)?;
    if read == 0 || answer.last() != Some(&b'\n') {
        return Err(String::from("the supervisor closed the connection without an answer"));
    }
    answer.pop();
    match Reply::parse(&answer) {
        Ok(Reply::Done { .. }) => Ok(()),
        Ok(Reply::Err { reason, .. }) => Err(format!("the supervisor refused: {reason}")),
        Ok(other) => Err(format!("unexpected answer from the supervisor: {other:?}")),
        Err(why) => Err(format!("unreadable answer from the supervisor ({why})")),
    }
}
