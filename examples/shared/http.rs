//! The HTTP/1.1 protocol of the `http_hello` and `https_hello` examples:
//! `Hello, World!` for `GET /`, keep-alive and pipelining, and a request
//! parser (`httparse`, as hyper uses) that never panics on bad input (a
//! malformed request line or header, an oversized head, a bad
//! `Content-Length` or a chunked body gets `400 Bad Request`, `431` or
//! `501`, and the connection closes). Other paths get 404, other methods
//! 405 with `Allow`; every answer has a `Date`. The same `Protocol` runs
//! over TCP and TLS.

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

/// The most headers a request may have.
const MAX_HEADERS: usize = 64;

/// Parses one request head from `buf` with `httparse` (the parser hyper
/// uses: bare-LF line ends, obs-text header bytes and absolute-form
/// targets are accepted as RFC 9112 allows): `Ok(None)` if it is not
/// complete yet, `Ok(Some((request, head_len)))`, or why it is refused.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Reject::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(e) => return Err(Reject::BadRequest(parse_error(e))),
    };
    if end > MAX_HEAD {
        return Err(Reject::HeadTooLarge);
    }
    // HTTP/1.1 keeps the connection by default, 1.0 closes it.
    let mut keep_alive = req.version == Some(1);
    let mut body_len = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(Reject::BadRequest("bad Content-Length"))?;
            if body_len.is_some_and(|m| m != n) {
                return Err(Reject::BadRequest("conflicting Content-Length headers"));
            }
            if n > MAX_BODY {
                return Err(Reject::BadRequest("body too large"));
            }
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reject::NotImplemented("Transfer-Encoding is not supported"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("");
    Ok(Some((
        Request {
            method,
            root: path_of(target) == Some("/"),
            keep_alive,
            body_len: body_len.unwrap_or(0),
        },
        end,
    )))
}

/// The path of a request target: origin form (`/a?b`) or absolute form
/// (`http://host/a`); `None` for the others (`*`, authority form).
fn path_of(target: &str) -> Option<&str> {
    let target = target.split('?').next().unwrap_or(target);
    if target.starts_with('/') {
        return Some(target);
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    Some(rest.find('/').map_or("/", |at| &rest[at..]))
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "malformed header name",
        httparse::Error::HeaderValue => "malformed header value",
        httparse::Error::NewLine => "malformed line end",
        httparse::Error::Status => "malformed status",
        httparse::Error::Token => "malformed request line",
        httparse::Error::Version => "unsupported HTTP version",
        _ => "malformed request",
    }
}

/// The `Date` header's value for `now` (RFC 9110's IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

thread_local! {
    /// The `Date` line and the whole keep-alive `Hello, World!` answer,
    /// remade when the second changes.
    static CACHED: std::cell::RefCell<(u64, String, Vec<u8>)> =
        const { std::cell::RefCell::new((u64::MAX, String::new(), Vec::new())) };
}

/// Runs `f` with this second's `Date` value and keep-alive hello answer.
fn with_cached<R>(f: impl FnOnce(&str, &[u8]) -> R) -> R {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let date = http_date(now);
            c.2 = format!(
                "HTTP/1.1 200 OK\r\nServer: weft\r\nDate: {date}\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
            )
            .into_bytes();
            c.1 = date;
            c.0 = secs;
        }
        f(&c.1, &c.2)
    })
}

fn response(status: &str, body: &str, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = with_cached(|date, _| {
        format!(
            "HTTP/1.1 {status}\r\nServer: weft\r\nDate: {date}\r\n{allow}Content-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if keep_alive { "" } else { "Connection: close\r\n" }
        )
    })
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
                        (Method::Get, true) if req.keep_alive => {
                            with_cached(|_, hello| conn.write(hello))
                        }
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
