//! The FastCGI record layer, for the runners this program implements
//! itself (CGI): read a request (BEGIN_REQUEST, PARAMS, STDIN), write
//! STDOUT records and END_REQUEST.

use std::io::{self, Read, Write};

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;

/// Largest PARAMS block accepted (nginx sends a few KB).
const MAX_PARAMS: usize = 1 << 20;
/// Largest request body buffered for a CGI program.
pub const MAX_STDIN: usize = 64 << 20;

/// One record.
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// Reads one record; `None` at a clean end of stream.
pub fn read_record(stream: &mut impl Read) -> io::Result<Option<Record>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match stream.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated FastCGI header")),
            n => got += n,
        }
    }
    if header[0] != 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not FastCGI version 1"));
    }
    let id = u16::from_be_bytes([header[2], header[3]]);
    let length = u16::from_be_bytes([header[4], header[5]]) as usize;
    let padding = header[6] as usize;
    let mut content = vec![0u8; length + padding];
    stream.read_exact(&mut content)?;
    content.truncate(length);
    Ok(Some(Record { kind: header[1], id, content }))
}

/// Writes `content` as records of `kind` (split at 65535 bytes; an empty
/// `content` writes the one empty record that ends a stream).
pub fn write_records(stream: &mut impl Write, kind: u8, id: u16, content: &[u8]) -> io::Result<()> {
    let mut chunks: Vec<&[u8]> = content.chunks(65535).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let len = chunk.len() as u16;
        let header = [1, kind, (id >> 8) as u8, id as u8, (len >> 8) as u8, len as u8, 0, 0];
        stream.write_all(&header)?;
        stream.write_all(chunk)?;
    }
    Ok(())
}

/// END_REQUEST with the program's exit status.
pub fn end_request(stream: &mut impl Write, id: u16, app_status: u32) -> io::Result<()> {
    let mut body = app_status.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0]); // FCGI_REQUEST_COMPLETE, reserved
    write_records(stream, END_REQUEST, id, &body)
}

fn length(bytes: &[u8], at: &mut usize) -> Result<usize, String> {
    let first = *bytes.get(*at).ok_or("truncated length")?;
    if first & 0x80 == 0 {
        *at += 1;
        return Ok(first as usize);
    }
    let four = bytes.get(*at..*at + 4).ok_or("truncated length")?;
    *at += 4;
    Ok((u32::from_be_bytes([four[0] & 0x7f, four[1], four[2], four[3]])) as usize)
}

/// FastCGI parameters: name, value.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// Name-value pairs of a PARAMS stream.
pub fn parse_params(bytes: &[u8]) -> Result<Params, String> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let name_len = length(bytes, &mut at)?;
        let value_len = length(bytes, &mut at)?;
        let name = bytes.get(at..at + name_len).ok_or("truncated name")?.to_vec();
        at += name_len;
        let value = bytes.get(at..at + value_len).ok_or("truncated value")?.to_vec();
        at += value_len;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A whole request: its id, parameters and body.
pub struct Request {
    pub id: u16,
    pub params: Params,
    pub stdin: Vec<u8>,
}

impl Request {
    pub fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// Reads one request; `None` when the peer closed before starting one.
pub fn read_request(stream: &mut impl Read) -> io::Result<Option<Request>> {
    let mut id = None;
    let mut params = Vec::new();
    let mut params_done = false;
    let mut stdin = Vec::new();
    loop {
        let Some(record) = read_record(stream)? else {
            return if id.is_none() { Ok(None) } else { Err(invalid("connection closed mid-request")) };
        };
        match record.kind {
            BEGIN_REQUEST => id = Some(record.id),
            ABORT_REQUEST => return Err(invalid("request aborted")),
            PARAMS if record.content.is_empty() => params_done = true,
            PARAMS => {
                params.extend_from_slice(&record.content);
                if params.len() > MAX_PARAMS {
                    return Err(invalid("PARAMS too large"));
                }
            }
            STDIN if record.content.is_empty() => break,
            STDIN => {
                stdin.extend_from_slice(&record.content);
                if stdin.len() > MAX_STDIN {
                    return Err(invalid("request body too large"));
                }
            }
            _ => {}
        }
    }
    let id = id.ok_or_else(|| invalid("no BEGIN_REQUEST"))?;
    if !params_done {
        return Err(invalid("PARAMS not terminated"));
    }
    let params = parse_params(&params).map_err(|e| invalid(&e))?;
    Ok(Some(Request { id, params, stdin }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_records(&mut out, kind, 1, content).unwrap();
        out
    }

    #[test]
    fn reads_a_request() {
        let mut params = vec![15, 0];
        params.extend_from_slice(b"SCRIPT_FILENAME");
        params.extend_from_slice(&[0x80, 0, 0, 3, 3]);
        params.extend_from_slice(b"REQabc");
        let mut wire = record(BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend(record(PARAMS, &params[..17]));
        wire.extend(record(PARAMS, &params[17..]));
        wire.extend(record(PARAMS, b""));
        wire.extend(record(STDIN, b"body"));
        wire.extend(record(STDIN, b""));
        let req = read_request(&mut wire.as_slice()).unwrap().unwrap();
        assert_eq!(req.param(b"SCRIPT_FILENAME"), Some(&b""[..]));
        assert_eq!(req.param(b"REQ"), Some(&b"abc"[..]));
        assert_eq!(req.stdin, b"body");
    }

    #[test]
    fn refuses_truncated_and_unterminated() {
        let mut wire = record(BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend(record(PARAMS, &[5, 1, b'a']));
        wire.extend(record(PARAMS, b""));
        wire.extend(record(STDIN, b""));
        assert!(read_request(&mut wire.as_slice()).is_err());
        let wire = record(BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(read_request(&mut wire.as_slice()).is_err());
        assert!(read_request(&mut &b""[..]).unwrap().is_none());
    }

    #[test]
    fn splits_large_output() {
        let mut out = Vec::new();
        write_records(&mut out, STDOUT, 7, &vec![b'x'; 70000]).unwrap();
        let mut reader = out.as_slice();
        assert_eq!(read_record(&mut reader).unwrap().unwrap().content.len(), 65535);
        assert_eq!(read_record(&mut reader).unwrap().unwrap().content.len(), 70000 - 65535);
    }
}
