//! The network examples, run as a user runs them (the binaries `cargo
//! test` builds), on 127.0.0.1 with OS-chosen ports: echo, http_hello
//! (including malformed and random input), port_forward (both directions
//! under back-pressure, an unreachable target) and chat (every line to
//! every reader while a flooder is slowed down; only a client that never
//! reads is dropped), and the TLS examples against the tools their docs
//! name: tls_echo and starttls with `openssl s_client`, https_hello with
//! `curl`.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;

/// A running example; killed on drop (and by the kernel if this test
/// binary dies first).
struct Example {
    child: ChildGuard,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

/// The example's binary. `cargo test` (all targets) builds the examples
/// before running tests; `cargo test --test examples` does not, so a
/// missing one is built here.
fn example_path(name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building example {name} failed");
    }
    assert!(path.exists(), "{} is missing", path.display());
    path
}

impl Example {
    fn start(name: &str, args: &[&str]) -> Example {
        let (child, lines) = spawn_with_lines(Command::new(example_path(name)).args(args));
        let first = recv(&lines);
        let (_, rest) = first
            .split_once("listening on ")
            .unwrap_or_else(|| panic!("{name} said {first:?}"));
        let addr = rest
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .split(['/', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Example { child, addr, lines }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status within `WAIT`.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the example did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn echo_echoes_and_stops_gracefully_on_sigterm() {
    let mut echo = Example::start("echo", &["127.0.0.1:0"]);
    let mut s = connect(echo.addr);
    s.write_all(b"hello weft\n").unwrap();
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello weft\n");
    let status = echo.terminate();
    assert!(status.success(), "{status}");
    let last = recv(&echo.lines);
    assert!(last.contains("stopped; 1 connections served"), "{last}");
    // Its open connection was closed in order.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_bad_address_argument_is_a_clear_error() {
    let out = Command::new(example_path("echo"))
        .arg("not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad address"));
}

/// `sim_chat` as its doc says: the seed, an hour of virtual time, a
/// trace that the same seed repeats (`WEFT_SEED` too) and another seed
/// changes, every line in order.
#[test]
fn sim_chat_repeats_its_trace_for_a_seed() {
    let run = |seed: Option<&str>, env: Option<&str>| {
        let mut cmd = Command::new(example_path("sim_chat"));
        cmd.env_remove("WEFT_SEED");
        if let Some(seed) = seed {
            cmd.arg(seed);
        }
        if let Some(env) = env {
            cmd.env("WEFT_SEED", env);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let trace = text
            .lines()
            .find_map(|l| l.strip_prefix("trace "))
            .expect("a trace line")
            .to_string();
        (text, trace)
    };
    let (text, a) = run(Some("5"), None);
    assert!(text.starts_with("seed 5\nvirtual 3600\n"), "{text}");
    assert!(text.contains("in order: yes"), "{text}");
    let (_, again) = run(None, Some("5"));
    assert_eq!(a, again, "WEFT_SEED=5 replays seed 5");
    let (_, other) = run(Some("6"), None);
    assert_ne!(a, other);
    let out = Command::new(example_path("sim_chat"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Reads one HTTP response (head and `Content-Length` body).
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let status = head.lines().next().unwrap().to_string();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn http_hello_keep_alive_pipelining_and_errors() {
    let http = Example::start("http_hello", &["127.0.0.1:0"]);
    let mut s = connect(http.addr);
    // Two requests in one write (pipelined), then a third, on one
    // connection.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s),
        ("HTTP/1.1 200 OK".into(), "Hello, World!".into())
    );
    assert_eq!(read_response(&mut s).0, "HTTP/1.1 404 Not Found");
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(read_response(&mut s).0, "HTTP/1.1 200 OK");

    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"G\xffT / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = connect(http.addr);
        s.write_all(bad).unwrap();
        let (status, _) = read_response(&mut s);
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{bad:?}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the connection stays open after a 400");
    }
    let mut s = connect(http.addr);
    s.write_all(&vec![b'a'; 9000]).unwrap();
    assert_eq!(
        read_response(&mut s).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let mut s = connect(http.addr);
    s.write_all(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, "HTTP/1.1 501 Not Implemented");
}

/// What a newcomer's client may send that RFC 9112 allows: bare-LF line
/// ends, an obs-text (Latin-1) header byte, an absolute-form target; a
/// 405 says what is allowed; every answer carries a valid `Date`.
#[test]
fn http_hello_accepts_what_rfc_9112_allows_and_dates_its_answers() {
    let http = Example::start("http_hello", &["127.0.0.1:0"]);
    for request in [
        &b"GET / HTTP/1.1\nHost: x\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: Jos\xe9\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = connect(http.addr);
        s.write_all(request).unwrap();
        assert_eq!(
            read_response(&mut s),
            ("HTTP/1.1 200 OK".into(), "Hello, World!".into()),
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    let mut s = connect(http.addr);
    s.write_all(b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
    let date = head
        .lines()
        .find_map(|l| l.strip_prefix("Date: "))
        .expect("a Date header")
        .trim()
        .to_string();
    // Python's email.utils reads it back as the same instant, near now.
    let out = python(
        r#"
import sys, time, email.utils
d = email.utils.parsedate_to_datetime(sys.argv[1])
assert email.utils.format_datetime(d, usegmt=True) == sys.argv[1], sys.argv[1]
assert abs(d.timestamp() - time.time()) < 300, sys.argv[1]
print("ok")
"#,
        &[&date],
    );
    assert_eq!(out.trim(), "ok", "{date}");
}

/// Reads one response head.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Random bytes never crash the server: it answers (an error, or nothing
/// yet) and keeps serving others. One server for all cases, owned by this
/// test (so it is killed when the test ends, pass or fail).
#[test]
fn http_hello_survives_any_input() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let server = std::cell::RefCell::new(Example::start("http_hello", &["127.0.0.1:0"]));
    let addr = server.borrow().addr;
    let mut runner = TestRunner::new(Config::with_cases(64));
    let inputs = proptest::collection::vec(any::<u8>(), 0..4096);
    let result = runner.run(&inputs, |input| {
        let mut s = connect(addr);
        // The server may answer 400 and close before it has read it all.
        let _ = s.write_all(&input);
        let _ = s.shutdown(Shutdown::Write);
        let mut answer = Vec::new();
        match s.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        }
        if !server.borrow_mut().alive() {
            return Err(TestCaseError::fail(format!("the server died on {input:?}")));
        }
        let mut ok = connect(addr);
        ok.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        prop_assert_eq!(read_response(&mut ok).1, "Hello, World!");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A test binary that exits without running destructors (as one whose
/// server sat in a `static` did) still takes its example server with it.
#[test]
fn an_example_ends_with_a_test_binary_that_exits_abruptly() {
    let (mut child, lines) = spawn_test_child("abrupt_exit_child", "WEFT_ABRUPT_CHILD");
    let pid: i32 = loop {
        if let Some(p) = recv(&lines).strip_prefix("server pid ") {
            break p.parse().unwrap();
        }
    };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let deadline = Instant::now() + WAIT;
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "server {pid} outlived its test");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` runs (a zombie waiting for its reaper counts as ended).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

/// The child half: starts a server, says its pid, and exits without
/// dropping anything.
#[test]
#[ignore = "run by an_example_ends_with_a_test_binary_that_exits_abruptly"]
fn abrupt_exit_child() {
    if std::env::var_os("WEFT_ABRUPT_CHILD").is_none() {
        return;
    }
    let server = Example::start("echo", &["127.0.0.1:0"]);
    println!("server pid {}", server.child.id());
    std::process::exit(0);
}

#[test]
fn port_forward_pipes_both_ways_with_a_slow_reader() {
    let echo = Example::start("echo", &["127.0.0.1:0"]);
    let target = echo.addr.to_string();
    let fwd = Example::start("port_forward", &["127.0.0.1:0", &target]);
    let mut s = connect(fwd.addr);
    let mut reader = s.try_clone().unwrap();
    const N: usize = 16 * 1024 * 1024;
    let data: Vec<u8> = (0..N).map(|i| (i * 31 % 251) as u8).collect();
    let expected = data.clone();
    let writer = std::thread::spawn(move || {
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    // A slow reader: back-pressure reaches the writer through both
    // directions of the proxy and the echo server.
    let mut got = Vec::with_capacity(N);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() < N / 4 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Err(e) => panic!("read through the proxy: {e}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(got.len(), N);
    assert!(got == expected, "bytes changed on the way");
}

#[test]
fn port_forward_reports_an_unreachable_target() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let fwd = Example::start("port_forward", &["127.0.0.1:0", &dead]);
    let mut s = connect(fwd.addr);
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("cannot reach the target"), "{answer}");
    assert!(answer.contains("refused"), "{answer}");
}

fn read_line(s: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    s.read_line(&mut line).expect("a line in time");
    line
}

#[test]
fn chat_delivers_every_line_to_readers_and_drops_only_a_client_that_never_reads() {
    let chat = Example::start("chat", &["127.0.0.1:0"]);
    let mut alice = BufReader::new(connect(chat.addr));
    assert!(read_line(&mut alice).starts_with("* welcome"));
    let mut bob = BufReader::new(connect(chat.addr));
    assert!(read_line(&mut bob).starts_with("* welcome"));
    assert!(read_line(&mut alice).contains("joined"));
    alice.get_mut().write_all(b"/nick alice\nhello\n").unwrap();
    assert!(read_line(&mut bob).contains("is now alice"));
    assert_eq!(read_line(&mut bob), "<alice> hello\n");
    assert!(read_line(&mut alice).contains("is now alice"));

    // Carol joins and never reads (with a small receive buffer, so the
    // kernel does not hide that for megabytes).
    let carol_sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    carol_sock.set_recv_buffer_size(4096).unwrap();
    carol_sock.connect(&chat.addr.into()).unwrap();
    let mut carol: TcpStream = carol_sock.into();
    assert!(read_line(&mut alice).contains("joined"));
    assert!(read_line(&mut bob).contains("joined"));
    // Alice floods: 20,000 lines (20 MB) in one burst, as fast as TCP
    // lets her. The room slows her down instead of dropping anything.
    const LINES: usize = 20_000;
    let text = "x".repeat(1000);
    let talker = {
        let mut a = alice.get_ref().try_clone().unwrap();
        let line = format!("{text}\n");
        std::thread::spawn(move || {
            let burst = line.repeat(LINES);
            a.write_all(burst.as_bytes()).is_ok()
        })
    };
    // Bob keeps reading: he gets every line, in order, and hears that
    // carol, who never reads, left. Once alice is done, he asks who is
    // here (still reading all the while).
    let said = format!("<alice> {text}\n");
    let mut seen = 0;
    let mut carol_left = false;
    let mut asked = false;
    let here = loop {
        let l = read_line(&mut bob);
        if l == said {
            seen += 1;
        } else if l.contains("left") {
            assert!(l.contains("not reading"), "{l:?}");
            carol_left = true;
        } else if l.starts_with("* here:") {
            break l;
        } else {
            panic!("unexpected line {l:?}");
        }
        if seen == LINES && carol_left && !asked {
            bob.get_mut().write_all(b"/who\n").unwrap();
            asked = true;
        }
    };
    assert!(talker.join().unwrap(), "alice could not send her lines");
    assert_eq!(seen, LINES, "bob, who reads, missed lines");
    // Carol's connection was cut (what she had not read is lost to her).
    carol.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    match carol.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    // Bob and alice are still in the room, carol is not.
    assert_eq!(here.matches(',').count(), 1, "{here}");
    assert!(here.contains("alice"), "{here}");
}

#[cfg(feature = "tls")]
#[test]
fn tls_echo_talks_to_openssl_s_client_as_its_doc_says() {
    use std::process::Stdio;
    let mut server = Example::start("tls_echo", &["127.0.0.1:0"]);
    let command = recv(&server.lines);
    let (_, command) = command
        .split_once("talk to it with: ")
        .unwrap_or_else(|| panic!("no command in {command:?}"));
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..2], ["openssl", "s_client"]);
    // As printed (interactive: stdin stays open until the echo came).
    let mut client = spawn_guarded(
        Command::new(words[0])
            .args(&words[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"hello over tls\n").unwrap();
    let stdout = client.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    assert_eq!(recv(&rx), "hello over tls\n");
    let handshake = recv(&server.lines);
    assert!(handshake.contains("TLSv1_3"), "{handshake}");
    drop(stdin);
    let _ = client.kill();
    assert!(server.terminate().success());
}

/// The command an example prints after "talk to it with: ", as words.
#[cfg(feature = "tls")]
fn printed_command(example: &Example) -> Vec<String> {
    let line = recv(&example.lines);
    let (_, command) = line
        .split_once("talk to it with: ")
        .unwrap_or_else(|| panic!("no command in {line:?}"));
    command.split_whitespace().map(String::from).collect()
}

#[cfg(feature = "tls")]
fn run_bounded(words: &[String]) -> (bool, String, String) {
    use std::process::Stdio;
    wait_output(spawn_guarded(
        Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ))
}

#[cfg(feature = "tls")]
#[test]
fn https_hello_answers_curl_over_alpn_http_1_1_as_its_doc_says() {
    let mut server = Example::start("https_hello", &["127.0.0.1:0"]);
    let mut words = printed_command(&server);
    assert_eq!(words[..2], ["curl", "--cacert"]);
    // Bounded, whatever happens.
    words.splice(1..1, ["--max-time".to_string(), "10".to_string()]);
    let (ok, body, err) = run_bounded(&words);
    assert!(ok, "curl failed: {err}");
    assert_eq!(body, "Hello, World!");
    // With -v, as the doc says: ALPN chose HTTP/1.1 (curl offered h2 too).
    let mut verbose = words.clone();
    verbose.insert(1, "-v".into());
    let (ok, body, err) = run_bounded(&verbose);
    assert!(ok, "curl -v failed: {err}");
    assert_eq!(body, "Hello, World!");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    // Another path is 404 over the same TLS listener.
    let mut missing = words.clone();
    let url = missing.pop().unwrap();
    missing.extend([
        "--write-out".into(),
        "%{http_code}".into(),
        format!("{url}nope"),
    ]);
    let (_, out, _) = run_bounded(&missing);
    assert!(out.ends_with("404"), "{out}");
    // A client without ALPN is served HTTP/1.1.
    let mut no_alpn = words.clone();
    no_alpn.insert(1, "--no-alpn".into());
    let (ok, body, err) = run_bounded(&no_alpn);
    assert!(ok, "curl --no-alpn failed: {err}");
    assert_eq!(body, "Hello, World!");
    // A client offering only h2 is refused in the handshake.
    let cafile = words[words.iter().position(|w| w == "--cacert").unwrap() + 1].clone();
    let (ok, _, err) = run_bounded(&[
        "openssl".into(),
        "s_client".into(),
        "-connect".into(),
        server.addr.to_string(),
        "-CAfile".into(),
        cafile,
        "-alpn".into(),
        "h2".into(),
    ]);
    assert!(!ok, "a handshake without a common protocol succeeded");
    assert!(err.contains("no application protocol"), "{err}");
    assert!(server.alive());
    assert!(server.terminate().success());
}

/// Lines of a child's stdout on a channel (read by a thread).
fn stdout_lines(child: &mut ChildGuard) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(feature = "tls")]
#[test]
fn starttls_upgrades_for_openssl_s_client_as_its_doc_says() {
    use std::process::Stdio;
    let mut server = Example::start("starttls", &["127.0.0.1:0"]);
    let words = printed_command(&server);
    assert_eq!(words[..4], ["openssl", "s_client", "-starttls", "smtp"]);
    let mut client = spawn_guarded(
        Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut stdin = client.stdin.take().unwrap();
    let lines = stdout_lines(&mut client);
    // As the doc says: ECHO is answered once encrypted, QUIT ends it.
    stdin.write_all(b"ECHO hello\n").unwrap();
    assert_eq!(recv(&lines), "250 hello");
    let upgraded = recv(&server.lines);
    assert!(upgraded.contains("upgraded to TLSv1_3"), "{upgraded}");
    stdin.write_all(b"QUIT\n").unwrap();
    assert_eq!(recv(&lines), "221 Bye");
    let deadline = Instant::now() + WAIT;
    while client.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "s_client did not end after QUIT");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.terminate().success());
}

/// Reads one CRLF-terminated reply line (bounded by the socket timeout).
#[cfg(feature = "tls")]
fn reply_line(s: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed after {line:?}");
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

#[cfg(feature = "tls")]
#[test]
fn starttls_refuses_before_the_upgrade_and_feeds_pipelined_bytes_to_tls() {
    use weft::io::tls::{rustls, TlsClientBuilder};
    let server = Example::start("starttls", &["127.0.0.1:0"]);
    let words = printed_command(&server);
    let cafile = &words[words.iter().position(|w| w == "-CAfile").unwrap() + 1];
    let mut s = connect(server.addr);
    assert!(reply_line(&mut s).starts_with("220 "));
    s.write_all(b"ECHO too early\r\nEHLO test\r\n").unwrap();
    assert_eq!(
        reply_line(&mut s),
        "530 Must issue a STARTTLS command first\r\n"
    );
    assert_eq!(reply_line(&mut s), "250-weft greets test\r\n");
    assert_eq!(reply_line(&mut s), "250-STARTTLS\r\n");
    assert_eq!(reply_line(&mut s), "250 HELP\r\n");
    // STARTTLS and the ClientHello in one write: the example must hand
    // the bytes after the line to TLS, not read them as a command.
    let roots = weft::io::tls::load_roots(cafile).unwrap();
    let config = TlsClientBuilder::new(roots).build().unwrap();
    let name = weft::io::tls::server_name("127.0.0.1").unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = b"STARTTLS\r\n".to_vec();
    tls.write_tls(&mut hello).unwrap();
    s.write_all(&hello).unwrap();
    assert_eq!(reply_line(&mut s), "220 Ready to start TLS\r\n");
    let mut stream = rustls::Stream::new(&mut tls, &mut s);
    stream
        .write_all(b"EHLO again\r\nECHO secret\r\nSTARTTLS\r\n")
        .unwrap();
    assert_eq!(reply_line(&mut stream), "250-weft greets again\r\n");
    assert_eq!(reply_line(&mut stream), "250 HELP\r\n");
    assert_eq!(reply_line(&mut stream), "250 secret\r\n");
    assert_eq!(reply_line(&mut stream), "503 TLS already active\r\n");
    // A line longer than SMTP allows is refused and the connection ends.
    stream.write_all(&[b'x'; 1500]).unwrap();
    assert_eq!(reply_line(&mut stream), "500 Line too long\r\n");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}

#[cfg(feature = "process")]
#[test]
fn run_command_labels_the_output_and_exits_as_the_child_did() {
    use std::process::Stdio;
    let run = |args: &[&str]| {
        let child = spawn_guarded(
            Command::new(example_path("run_command"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let pid = child.id();
        let out = wait_output(child);
        (pid, out)
    };
    let (_, (ok, out, _)) = run(&["sh", "-c", "echo out; echo err >&2; printf tail; exit 3"]);
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"[stdout] out"), "{out}");
    assert!(lines.contains(&"[stderr] err"), "{out}");
    assert!(lines.contains(&"[stdout] tail"), "{out}");
    assert_eq!(
        lines.last(),
        Some(&"run_command: sh exited with code 3"),
        "{out}"
    );
    // The exit code is the child's.
    let status = Command::new(example_path("run_command"))
        .args(["sh", "-c", "exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // A missing program is a clear error, not a crash.
    let (_, (ok, _, err)) = run(&["weft-no-such-program"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
}

#[cfg(feature = "process")]
#[test]
fn pty_session_forwards_lines_and_ctrl_c_reaches_the_child_through_the_pty() {
    use std::process::Stdio;
    let mut child = spawn_guarded(
        Command::new(example_path("pty_session"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let out = chunks(&mut child);
    let mut seen = Vec::new();
    let mut wait_for = |want: &str| {
        while !String::from_utf8_lossy(&seen).contains(want) {
            let chunk = recv(&out);
            assert!(
                !chunk.is_empty(),
                "ended before {want:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk);
        }
    };
    // A terminal of the documented size.
    stdin.write_all(b"stty size\n").unwrap();
    wait_for("24 80");
    // Ctrl-C (SIGINT to the example) interrupts the sleep, not the shell.
    stdin.write_all(b"echo sleeping; sleep 100\n").unwrap();
    wait_for("sleeping\r\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + WAIT;
    // ^C discards what was typed ahead, so the status question follows
    // it; repeated until the shell reports the interrupted sleep (a ^C
    // that came before `sleep` started cancels only the line).
    loop {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stdin.write_all(b"echo status $?\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if String::from_utf8_lossy(&seen).contains("status 130") {
            break;
        }
        while let Ok(chunk) = out.try_recv() {
            seen.extend_from_slice(&chunk);
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }
    // The shell lives on and ends as asked.
    stdin.write_all(b"exit 4\n").unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline + WAIT, "pty_session did not end");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(4));
}

#[cfg(feature = "process")]
#[test]
fn proc_supervisor_restarts_a_failing_command_until_the_intensity_is_exceeded() {
    use std::process::Stdio;
    let out = wait_output(spawn_guarded(
        Command::new(example_path("proc_supervisor"))
            .args(["sh", "-c", "echo working; exit 1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    let (ok, text, _) = out;
    assert!(!ok, "{text}");
    // Five starts (four restarts allowed), each with its output and exit.
    for n in 1..=5 {
        assert!(
            text.contains(&format!("proc_supervisor: start {n}: pid ")),
            "{text}"
        );
    }
    assert_eq!(text.matches("] working").count(), 5, "{text}");
    assert_eq!(text.matches("exited with code 1").count(), 6, "{text}");
    assert!(text.contains("gave up after 5 starts"), "{text}");
    // A command that succeeds is not restarted.
    let (ok, text, _) = wait_output(spawn_guarded(
        Command::new(example_path("proc_supervisor"))
            .args(["sh", "-c", "echo fine"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "{text}");
    assert!(
        text.contains("start 1:") && !text.contains("start 2:"),
        "{text}"
    );
}

#[test]
fn unix_echo_greets_nc_with_its_credentials_and_removes_its_socket_on_sigterm() {
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("weft-unix-echo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("echo.sock");
    let (mut server, lines) = spawn_with_lines(
        Command::new(example_path("unix_echo"))
            .arg(&path)
            .arg("660"),
    );
    assert_eq!(
        recv(&lines),
        format!("unix_echo: listening on {}", path.display())
    );
    let mode = Command::new("stat")
        .args(["-c", "%a"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "660");

    // The doc's command: `nc -U PATH`.
    let mut nc = spawn_guarded(
        Command::new("nc")
            .arg("-U")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let replies = stdout_lines(&mut nc);
    let greeting = recv(&replies);
    assert!(
        greeting.starts_with(&format!("hello pid {} (uid ", nc.id())),
        "{greeting}"
    );
    nc.stdin
        .as_mut()
        .unwrap()
        .write_all(b"over a unix socket\n")
        .unwrap();
    assert_eq!(recv(&replies), "over a unix socket");
    drop(nc);

    let pid = nix::unistd::Pid::from_raw(server.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    assert!(recv(&lines).contains("stopped; 1 connections served"));
    assert!(server.wait().unwrap().success());
    assert!(!path.exists(), "the socket file is removed on stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "process")]
#[test]
fn fd_pass_hands_connections_to_its_workers_in_turn() {
    let mut server = Example::start("fd_pass", &["127.0.0.1:0", "2"]);
    let mut workers = Vec::new();
    while workers.len() < 2 {
        let line = recv(&server.lines);
        let pid = line
            .strip_prefix("fd_pass: worker ")
            .and_then(|rest| rest.strip_suffix(" ready"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        workers.push(pid.parse::<i32>().unwrap());
    }
    let mut served_by = Vec::new();
    for i in 0..4 {
        let s = connect(server.addr);
        let mut s = BufReader::new(s);
        let greeting = read_line(&mut s);
        let pid: i32 = greeting
            .trim_end()
            .strip_prefix("served by worker ")
            .unwrap_or_else(|| panic!("greeting {greeting:?}"))
            .parse()
            .unwrap();
        served_by.push(pid);
        let line = format!("line {i}\n");
        s.get_mut().write_all(line.as_bytes()).unwrap();
        assert_eq!(read_line(&mut s), line);
    }
    // Both workers, in turn; the parent read none of it.
    assert!(workers.contains(&served_by[0]) && workers.contains(&served_by[1]));
    assert_ne!(served_by[0], served_by[1]);
    assert_eq!(served_by[0], served_by[2]);
    assert_eq!(served_by[1], served_by[3]);
    let status = server.terminate();
    assert!(status.success(), "{status}");
    for pid in workers {
        eventually("the worker ended with its parent", || !process_alive(pid));
    }
}

#[test]
fn udp_echo_answers_nc_u_as_its_doc_says() {
    use std::process::Stdio;
    for mode in [None, Some("--batch")] {
        let mut args = vec!["127.0.0.1:0"];
        args.extend(mode);
        let mut server = Example::start("udp_echo", &args);
        let mut nc = spawn_guarded(
            Command::new("nc")
                .arg("-u")
                .arg(server.addr.ip().to_string())
                .arg(server.addr.port().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let replies = stdout_lines(&mut nc);
        for line in ["one datagram", "and another"] {
            // One write: nc sends what one read of its stdin gets as one
            // datagram.
            let stdin = nc.stdin.as_mut().unwrap();
            stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
            assert_eq!(recv(&replies), line, "{mode:?}");
        }
        drop(nc);
        let status = server.terminate();
        assert!(status.success(), "{status}");
        let last = recv(&server.lines);
        assert!(
            last.contains("stopped; 2 datagrams echoed, 0 replies dropped"),
            "{mode:?}: {last}"
        );
    }
}

#[test]
fn multicast_chat_copies_hear_each_other_and_not_themselves() {
    use std::process::Stdio;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = format!("239.255.77.78:{port}");
    let start = |name: &str| {
        let mut child = spawn_guarded(
            Command::new(example_path("multicast_chat"))
                .arg(name)
                .arg(&group)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let lines = stdout_lines(&mut child);
        let first = recv(&lines);
        assert!(
            first.starts_with("multicast_chat: listening on 0.0.0.0:"),
            "{first}"
        );
        (child, lines)
    };
    let (mut ann, ann_lines) = start("ann");
    let (mut bob, bob_lines) = start("bob");
    ann.stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello from ann\n")
        .unwrap();
    assert_eq!(recv(&bob_lines), "ann: hello from ann");
    bob.stdin.as_mut().unwrap().write_all(b"hi ann\n").unwrap();
    assert_eq!(
        recv(&ann_lines),
        "bob: hi ann",
        "and not its own line first"
    );
    // The end of input ends each.
    drop(ann.stdin.take());
    drop(bob.stdin.take());
    for child in [&mut ann, &mut bob] {
        let mut status = None;
        eventually("the copy exits at the end of its input", || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        assert!(status.unwrap().success());
    }
}

/// Runs `name` with `args` and `input` on its stdin; (exit code, stdout,
/// stderr), bounded.
fn run_example(name: &str, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    use std::process::Stdio;
    let mut child = spawn_guarded(
        Command::new(example_path(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread: a child that never reads must not block us.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (status, out, err) = collect(child);
    (status.code(), out, err)
}

#[test]
fn the_client_example_talks_to_the_tcp_unix_and_udp_echo_servers() {
    let mut echo = Example::start("echo", &["127.0.0.1:0"]);
    let addr = echo.addr.to_string();
    let (code, out, err) = run_example("client", &[&addr], b"hello\nweft\n");
    assert_eq!((code, out.as_str()), (Some(0), "hello\nweft\n"), "{err}");
    assert!(echo.terminate().success());

    let dir = TempDir::new("client");
    let path = dir.join("echo.sock");
    let path = path.to_str().unwrap();
    let mut unix = spawn_with_lines(
        Command::new(example_path("unix_echo"))
            .arg("--quiet")
            .arg(path),
    );
    assert!(recv(&unix.1).contains("listening on"));
    let (code, out, err) = run_example("client", &["--unix", path], b"over unix\n");
    assert_eq!((code, out.as_str()), (Some(0), "over unix\n"), "{err}");
    let _ = unix.0.kill();

    let mut udp = Example::start("udp_echo", &["127.0.0.1:0"]);
    let addr = udp.addr.to_string();
    let (code, out, err) = run_example("client", &["--udp", &addr], b"one\ntwo\n");
    assert_eq!((code, out.as_str()), (Some(0), "one\ntwo\n"), "{err}");
    assert!(udp.terminate().success());

    // Nothing listening: a clear error, exit status 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (code, _, err) = run_example("client", &[&closed], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused"), "{err}");
}

/// Every example answers `--help` with its usage (exit 0), and a bad
/// argument with one line saying what is wrong plus the usage (exit 2),
/// never a Rust debug dump.
#[test]
fn every_example_has_help_and_a_one_line_usage_error() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(String::from)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    // Examples that need an optional feature are not built without it.
    const NEED_PROCESS: [&str; 4] = ["fd_pass", "proc_supervisor", "pty_session", "run_command"];
    const NEED_TLS: [&str; 3] = ["https_hello", "starttls", "tls_echo"];
    let built = |name: &str| {
        (cfg!(feature = "process") || !NEED_PROCESS.contains(&name))
            && (cfg!(feature = "tls") || !NEED_TLS.contains(&name))
    };
    names.retain(|n| built(n));
    for name in &names {
        let (code, out, err) = run_example(name, &["--help"], b"");
        assert_eq!(code, Some(0), "{name} --help: {err}");
        let usage = format!("usage: cargo run --release --example {name}");
        assert!(out.starts_with(&usage), "{name} --help said {out:?}");
        let source = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
        assert!(
            source.contains(&format!("//! Run:   cargo run --release --example {name}")),
            "{name}'s doc comment does not say how to run it in the common form"
        );
    }
    let bad: &[(&str, &[&str])] = &[
        ("echo", &["not-an-address"]),
        ("echo", &["127.0.0.1:0", "extra"]),
        ("chat", &["nope"]),
        ("http_hello", &["nope"]),
        ("https_hello", &["nope"]),
        ("tls_echo", &["nope"]),
        ("starttls", &["nope"]),
        ("port_forward", &["127.0.0.1:0", "nope"]),
        ("ping_pong", &["many"]),
        ("udp_echo", &["nope"]),
        ("multicast_chat", &["ann", "10.0.0.1:7"]),
        ("fd_pass", &["127.0.0.1:0", "0"]),
        ("unix_echo", &["/tmp/weft-usage-test.sock", "999"]),
        ("client", &["nope"]),
        ("observe", &["nope"]),
        ("cluster_ping", &["a@b"]),
        ("client", &["--bogus"]),
        ("run_command", &[]),
        ("tour", &["extra"]),
        ("timers", &["extra"]),
        ("threads", &["extra"]),
        ("supervision", &["extra"]),
    ];
    for (name, args) in bad.iter().filter(|(name, _)| built(name)) {
        let (code, out, err) = run_example(name, args, b"");
        assert_eq!(code, Some(2), "{name} {args:?}: {out} {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{name} {args:?}: {err:?}");
        assert!(lines[0].starts_with(&format!("{name}: ")), "{err:?}");
        assert!(lines[1].starts_with("usage: cargo run"), "{err:?}");
    }
}

/// An error is printed with its cause once: weft's errors keep the OS
/// error as their `source`, not in their own message too.
#[test]
fn a_busy_port_is_reported_with_its_cause_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run_example("echo", &[&addr], b"");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("in use").count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("echo: cannot listen on {addr}: ")),
        "{err}"
    );
}

/// The observe example: Prometheus metrics whose listener counters match
/// the connections made, and a console that answers its commands against
/// the known tree (a root supervisor with `ticker` and `flaky`).
#[test]
fn observe_serves_metrics_and_a_console_as_its_doc_says() {
    let (mut child, lines) = spawn_with_lines(Command::new(example_path("observe")).args([
        "127.0.0.1:0",
        "127.0.0.1:0",
        "127.0.0.1:0",
    ]));
    let first = recv(&lines);
    let addr_after = |marker: &str| -> SocketAddr {
        let rest = first
            .split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("{first}"));
        rest.trim_start_matches("http://")
            .split(['/', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let echo = addr_after("echo listening on ");
    let metrics = addr_after("metrics on ");
    let console = addr_after("console on ");
    for _ in 0..2 {
        let mut s = connect(echo);
        s.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
    }
    let scrape = || {
        let mut s = connect(metrics);
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_response(&mut s)
    };
    let accepted = format!("weft_listener_accepted_total{{addr=\"{echo}\"}} 2");
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = scrape();
        assert_eq!(status, "HTTP/1.1 200 OK");
        if body.lines().any(|l| l == accepted) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {accepted:?} in\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for family in [
        "# TYPE weft_worker_turns_total counter",
        "weft_worker_turns_total{worker=\"0\"} ",
        "weft_actors{type=\"Ticker\"} 1",
        "weft_actors{type=\"Listener<Echo>\"} 1",
        "# TYPE weft_mailbox_high_water gauge",
        "weft_timers_pending ",
    ] {
        assert!(body.contains(family), "no {family:?} in\n{body}");
    }

    let mut s = connect(console);
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut answer = || {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("an answer");
            if line == "\n" || line.is_empty() {
                return text;
            }
            text.push_str(&line);
        }
    };
    assert!(answer().starts_with("weft console"));
    s.write_all(b"tree\n").unwrap();
    let tree = answer();
    let root = tree
        .lines()
        .find(|l| l.contains(" Supervisor "))
        .expect(&tree);
    assert!(root.starts_with('#'), "the root is not indented: {tree}");
    assert!(
        tree.lines()
            .any(|l| l.starts_with("  #") && l.contains(" Ticker \"ticker\" mailbox ")),
        "{tree}"
    );
    s.write_all(b"sup\n").unwrap();
    let sup = answer();
    assert!(
        sup.contains("  ticker [Worker, Permanent, restarts 0] #"),
        "{sup}"
    );
    assert!(
        sup.contains("  flaky [Worker, Permanent, restarts "),
        "{sup}"
    );
    s.write_all(b"stats\n").unwrap();
    let stats = answer();
    assert!(
        stats.contains(&format!("listener {echo}: 2 accepted")),
        "{stats}"
    );
    let ticker_id: String = tree
        .lines()
        .find(|l| l.contains("Ticker"))
        .and_then(|l| l.trim().strip_prefix('#'))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    s.write_all(format!("actor {ticker_id}\n").as_bytes())
        .unwrap();
    assert!(answer().starts_with(&format!("#{ticker_id} Ticker \"ticker\"")));
    s.write_all(b"actor 999999999\nfrobnicate\n").unwrap();
    assert_eq!(answer(), "no live actor #999999999\n");
    assert!(answer().starts_with("unknown command \"frobnicate\""));
    let _ = child.kill();
}
