//! The forwarder's HTTP/1.x server side, for `up --metrics` and `up --api`: one request per
//! connection, served one connection at a time on `std::net` (no async runtime), every part of
//! it bounded: the head in size ([`MAX_HEAD`]) and header count, the body by the caller's limit,
//! and the whole request by a deadline. `httparse` (hyper's parser) reads the head. `tiny_http`
//! was tried and dropped: it bounds neither a head's size nor how long a client may take to
//! send it (tiny-http issue #56).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest request head read.
pub const MAX_HEAD: usize = 8192;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 64;

/// A request as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query string.
    pub target: String,
    /// Header names and values, in order (values as sent, lossily decoded).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The values of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// Why a request could not be read; each but `Io` deserves an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The head is over [`MAX_HEAD`]: 431.
    HeadTooLarge,
    /// The body is over the caller's limit: 413.
    BodyTooLarge,
    /// Not an HTTP/1.x request, or a body without a length: 400.
    Malformed,
    /// The client went away or took too long: no answer.
    Io,
}

impl ReadError {
    /// The status line to answer with, if any.
    pub fn status(&self) -> Option<&'static str> {
        match self {
            ReadError::HeadTooLarge => Some("431 Request Header Fields Too Large"),
            ReadError::BodyTooLarge => Some("413 Content Too Large"),
            ReadError::Malformed => Some("400 Bad Request"),
            ReadError::Io => None,
        }
    }
}

/// Reads one request: the head through its blank line, then `Content-Length` bytes of body (at
/// most `max_body`), all of it within `deadline`.
pub fn read_request(conn: &mut TcpStream, max_body: usize, deadline: Duration) -> Result<Request, ReadError> {
    let until = Instant::now() + deadline;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        read_some(conn, &mut buf, until)?;
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let mut request = parse_head(&buf[..head_end])?;
    let length = match request.header("Content-Length").as_slice() {
        [] if request.header("Transfer-Encoding").is_empty() => 0,
        [one] => one.trim().parse::<usize>().map_err(|_| ReadError::Malformed)?,
        _ => return Err(ReadError::Malformed),
    };
    if length > max_body {
        return Err(ReadError::BodyTooLarge);
    }
    while buf.len() < head_end + length {
        read_some(conn, &mut buf, until)?;
    }
    request.body = buf[head_end..head_end + length].to_vec();
    Ok(request)
}

fn read_some(conn: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> Result<(), ReadError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::Io);
    }
    conn.set_read_timeout(Some(left)).map_err(|_| ReadError::Io)?;
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk) {
        Ok(0) | Err(_) => Err(ReadError::Io),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let (Ok(httparse::Status::Complete(_)), Some(method), Some(target)) = (req.parse(head), req.method, req.path)
    else {
        return Err(ReadError::Malformed);
    };
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: Vec::new(),
    })
}

/// Writes one answer and closes the connection. `status` may carry extra header lines.
pub fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str, head_only: bool) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.flush();
    // A lingering close: what the client still sends (an over-long head) is read and dropped
    // briefly, so closing does not reset the connection before it has read the answer.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if matches!(conn.read(&mut sink), Ok(0) | Err(_)) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Sends `raw` to a one-shot server that reads with `max_body` and reports what it read.
    fn read_as_server(raw: &'static [u8], max_body: usize) -> Result<Request, ReadError> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let _ = c.write_all(raw);
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        });
        let (mut conn, _) = l.accept().unwrap();
        let r = read_request(&mut conn, max_body, Duration::from_secs(2));
        respond(&mut conn, "200 OK", "", "", false);
        client.join().unwrap();
        r
    }

    #[test]
    fn a_post_is_read_with_its_body() {
        let r = read_as_server(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nAction=Ping", 64).unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/"));
        assert_eq!(r.header("host"), ["x"]);
        assert_eq!(r.body, b"Action=Ping");
    }

    #[test]
    fn bounds_are_kept() {
        let big = read_as_server(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", 64);
        assert_eq!(big.unwrap_err(), ReadError::BodyTooLarge);
        let chunked = read_as_server(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 64);
        assert_eq!(chunked.unwrap_err(), ReadError::Malformed);
        let head: &'static [u8] =
            Box::leak(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD)).into_bytes().into_boxed_slice());
        assert_eq!(read_as_server(head, 0).unwrap_err(), ReadError::HeadTooLarge);
        assert_eq!(read_as_server(b"NONSENSE\r\n\r\n", 0).unwrap_err(), ReadError::Malformed);
    }
}
