//! The HTTP/1.1 protocol of the `http_hello` and `https_hello` examples:
//! `Hello, World!` for `GET /`, keep-alive and pipelining, and a request
//! parser that never panics on bad input (a malformed request line or
//! header, an oversized head, a bad `Content-Length` or a chunked body
//! gets `400 Bad Request`, `431` or `501`, and the connection closes).
//! Other paths get 404, other methods 405. The same `Protocol` runs over
//! TCP and TLS.

use weft::prelude::*;

/// The most bytes a request head (request line and headers) may take.
const MAX_HEAD: usize = 8 * 1024;
/// The largest request body accepted (and skipped).
const MAX_BODY: usize = 1024 * 1024;

/// One parsed request: what the answer depends on.
#[derive(Debug, PartialEq)]
struct Request {
    method: Method,
    root: bool,
    keep_alive: bool,
    body_len: usize,
}

#[derive(Debug, PartialEq)]
enum Method {
    Get,
    Head,
    Other,
}

/// Why a request is refused; each maps to a status and closes.
#[derive(Debug, PartialEq)]
enum Reject {
    BadRequest(&'static str),
    HeadTooLarge,
    NotImplemented(&'static str),
}

/// Parses one request head from `buf`: `Ok(None)` if it is not complete
/// yet, `Ok(Some((request, head_len)))`, or why it is refused.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Reject> {
    let Some(end) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Err(Reject::HeadTooLarge);
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        return Err(Reject::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| Reject::BadRequest("the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::BadRequest("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(Reject::BadRequest("malformed method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Reject::BadRequest("malformed request target"));
    }
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Reject::BadRequest("unsupported HTTP version")),
    };
    let mut body_len = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Reject::BadRequest("header without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(Reject::BadRequest("malformed header name"));
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if value.bytes().any(|b| b < b' ' && b != b'\t') {
            return Err(Reject::BadRequest("control character in a header value"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| Reject::BadRequest("bad Content-Length"))?;
            if body_len.is_some_and(|m| m != n) {
                return Err(Reject::BadRequest("conflicting Content-Length headers"));
            }
            if n > MAX_BODY {
                return Err(Reject::BadRequest("body too large"));
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reject::NotImplemented("Transfer-Encoding is not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split('?').next().unwrap_or(target);
    Ok(Some((
        Request {
            method,
            root: path == "/",
            keep_alive,
            body_len: body_len.unwrap_or(0),
        },
        end + 4,
    )))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

fn response(status: &str, body: &str, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// One HTTP connection.
#[derive(Default)]
pub struct Http {
    /// Bytes of an incomplete request head.
    pending: Vec<u8>,
    /// Body bytes still to skip.
    skip: usize,
}

impl Http {
    /// Answers every complete request in `input`; returns how much of it
    /// was used, or `None` once the connection is closing.
    fn serve(&mut self, conn: &mut Conn<'_, '_, Self>, input: &[u8]) -> Option<usize> {
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(input.len() - at);
                self.skip -= n;
                at += n;
                if self.skip > 0 {
                    return Some(at);
                }
            }
            match parse(&input[at..]) {
                Ok(None) => return Some(at),
                Ok(Some((req, used))) => {
                    at += used;
                    self.skip = req.body_len;
                    let head_only = req.method == Method::Head;
                    let answer = match (&req.method, req.root) {
                        (Method::Get, true) if req.keep_alive => conn.write(HELLO),
                        (Method::Get | Method::Head, true) => conn.write(&response(
                            "200 OK",
                            "Hello, World!",
                            req.keep_alive,
                            head_only,
                        )),
                        (Method::Get | Method::Head, false) => conn.write(&response(
                            "404 Not Found",
                            "not found\n",
                            req.keep_alive,
                            head_only,
                        )),
                        (Method::Other, _) => conn.write(&response(
                            "405 Method Not Allowed",
                            "only GET and HEAD\n",
                            req.keep_alive,
                            false,
                        )),
                    };
                    if answer.is_err() || !req.keep_alive {
                        conn.close();
                        return None;
                    }
                }
                Err(reject) => {
                    let (status, why) = match reject {
                        Reject::BadRequest(why) => ("400 Bad Request", why),
                        Reject::HeadTooLarge => (
                            "431 Request Header Fields Too Large",
                            "request head too large",
                        ),
                        Reject::NotImplemented(why) => ("501 Not Implemented", why),
                    };
                    let _ = conn.write(&response(status, &format!("{why}\n"), false, false));
                    conn.close();
                    return None;
                }
            }
        }
    }
}

impl Protocol for Http {
    type Msg = ();

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        if self.pending.is_empty() {
            // The common case: whole requests in one read, parsed in place.
            if let Some(used) = self.serve(conn, data) {
                self.pending.extend_from_slice(&data[used..]);
            }
        } else {
            let mut input = std::mem::take(&mut self.pending);
            input.extend_from_slice(data);
            if let Some(used) = self.serve(conn, &input) {
                input.drain(..used);
                self.pending = input;
            }
        }
        Ok(())
    }
}
