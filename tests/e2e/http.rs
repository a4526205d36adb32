//! Ops that call services (issue 16): outgoing HTTP by allowlist, its limits
//! and accounting, secrets, and concurrency caps and rate limits, against a
//! loopback HTTP server started here that counts what reaches it.

use crate::support::{Running, TestJob, dynhost_within};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// (path, authorization header, when it arrived)
    log: Mutex<Vec<(String, String, Instant)>>,
    stop: AtomicBool,
}

/// A loopback HTTP/1.1 server, one thread per connection. Paths:
/// `/ok/X` answers `hello X`; `/hold/MS` answers after MS ms (for
/// concurrency); `/slow` never answers; `/redirect/PORT` sends a 302 to
/// `http://127.0.0.1:PORT/ok/redirected`; `/huge` streams zeros without
/// end; `/loris` sends headers, then a byte a second.
pub(crate) struct Server {
    port: u16,
    seen: Arc<Seen>,
}

impl Server {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let seen = shared.clone();
                std::thread::spawn(move || serve(conn, &seen));
            }
        });
        Self { port, seen }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.seen.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.seen.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, seen: &Seen) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (mut auth, mut length) = (String::new(), 0usize);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or(("", ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => auth = value.trim().to_owned(),
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    seen.log
        .lock()
        .unwrap()
        .push((path.clone(), auth, Instant::now()));
    let mut conn = conn;
    // A request stops counting as in flight before its answer is sent: the
    // client can then never start its next request while this one still
    // counts (which would show more in flight than the op ever had).
    let done = std::sync::Once::new();
    let finish = || done.call_once(|| _ = seen.in_flight.fetch_sub(1, Ordering::SeqCst));
    let reply = |conn: &mut TcpStream, status: &str, extra: &str, body: &str| {
        finish();
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
    };
    if let Some(rest) = path.strip_prefix("/ok/") {
        reply(
            &mut conn,
            "200 OK",
            "",
            &format!("hello {rest} ({} bytes in)", body.len()),
        );
    } else if let Some(ms) = path.strip_prefix("/hold/") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(100)));
        reply(&mut conn, "200 OK", "", "held");
    } else if let Some(port) = path.strip_prefix("/redirect/") {
        let location = format!("location: http://127.0.0.1:{port}/ok/redirected\r\n");
        reply(&mut conn, "302 Found", &location, "");
    } else if path == "/slow" {
        std::thread::sleep(Duration::from_secs(120));
    } else if path == "/huge" {
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n"
        );
        let chunk = vec![0u8; 1 << 20];
        while conn.write_all(&chunk).is_ok() {}
    } else if path == "/loris" {
        let _ = write!(conn, "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
        while conn.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    } else {
        reply(&mut conn, "404 Not Found", "", "no such path");
    }
    finish();
}

/// A job: `emit` emits `keys` keys, `fetch` is mapped over them with `extra`
/// (TOML lines for the fetch op) and `config` (its config table body).
fn fan_job(keys: u64, config: &str, extra: &str) -> String {
    format!(
        r#"name = "services"
[ops.emit]
component = "{{probe}}"
dynamic = true
config = {{ emit_count = {keys} }}
[ops.fetch]
component = "{{fetch}}"
inputs = {{ k = {{ map = "emit" }} }}
config = {{ {config} }}
{extra}
"#
    )
}

fn one_job(config: &str, extra: &str) -> String {
    format!(
        r#"name = "services"
[ops.fetch]
component = "{{fetch}}"
config = {{ {config} }}
{extra}
"#
    )
}

const WITHIN: Duration = Duration::from_secs(120);

#[test]
fn an_allowed_host_is_reached_and_counted() {
    let server = Server::start();
    let job = TestJob::new(&fan_job(
        5,
        &format!(
            r#"url = "{}", method = "POST", body = "12345""#,
            server.url("/ok/{key}")
        ),
        &format!(r#"allowed_outbound_hosts = ["{}"]"#, server.origin()),
    ));
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(0);
    assert_eq!(server.requests(), 5);
    let step = out.step("fetch[k3]");
    assert_eq!(step["stats"]["http_requests"], 1, "{step}");
    assert_eq!(step["stats"]["http_sent_bytes"], 5, "{step}");
    let reply: Value =
        serde_json::from_str(&serde_json::to_string(&out.output("fetch[k3]")).unwrap()).unwrap();
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"], "hello k3 (5 bytes in)", "{reply}");
    let received = step["stats"]["http_received_bytes"].as_u64().unwrap();
    assert_eq!(received, "hello k3 (5 bytes in)".len() as u64);
    let summary = out.op_summary("fetch");
    assert_eq!(summary["http_requests"], 5, "{summary}");
    assert_eq!(summary["http_sent_bytes"], 25, "{summary}");
    // The store keeps it per step, and `show` prints it.
    let run = out.finished()["run_id"].as_str().unwrap().to_owned();
    let show = dynhost_within(job.dir(), &["show", &run, "fetch[k3]"], WITHIN);
    show.assert_code(0);
    assert!(
        show.stdout
            .contains("1 HTTP request(s), 5 bytes sent, 21 received"),
        "{}",
        show.stdout
    );
    // So does the viewer's step page.
    let viewer = crate::ui::Viewer::start(job.dir());
    let (status, _, page) = viewer.get(&format!(
        "/runs/{run}/ops/fetch/step?keys={}",
        crate::ui::enc("[\"k3\"]")
    ));
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"services\">1 HTTP request(s), 5 bytes sent, 21 received"),
        "{page}"
    );
    // The summary a person reads says it too.
    let plain = dynhost_within(job.dir(), &["run", "job.toml"], WITHIN);
    plain.assert_code(0);
    assert!(
        plain
            .stderr
            .contains("fetch: 5 HTTP request(s), 25 bytes sent"),
        "{}",
        plain.stderr
    );
    assert_eq!(server.requests(), 10);
}

#[test]
fn a_host_not_allowed_is_refused_in_the_op_and_logged() {
    let server = Server::start();
    let other = Server::start();
    // No allowlist at all, then one that names another port.
    for extra in [
        String::new(),
        format!(r#"allowed_outbound_hosts = ["{}"]"#, other.origin()),
    ] {
        let job = TestJob::new(&one_job(
            &format!(r#"url = "{}""#, server.url("/ok/x")),
            &extra,
        ));
        let out = job.run_within(WITHIN, &[]);
        out.assert_code(1);
        let step = out.step("fetch");
        assert_eq!(step["failure"]["kind"], "op-error", "{step}");
        assert!(
            step["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("HttpRequestDenied"),
            "{step}"
        );
        let log = step["log"].as_str().unwrap();
        assert!(
            log.contains(&format!("HTTP request to http://127.0.0.1:{}", server.port))
                && log.contains("denied: not in `allowed_outbound_hosts` of op `fetch`"),
            "{log}"
        );
    }
    assert_eq!(server.requests(), 0, "nothing reached the denied server");
}

#[test]
fn a_redirect_to_a_host_not_allowed_is_refused() {
    let allowed = Server::start();
    let denied = Server::start();
    let job = TestJob::new(&one_job(
        &format!(
            r#"url = "{}", follow = true"#,
            allowed.url(&format!("/redirect/{}", denied.port))
        ),
        &format!(r#"allowed_outbound_hosts = ["{}"]"#, allowed.origin()),
    ));
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(1);
    assert_eq!(allowed.requests(), 1);
    assert_eq!(denied.requests(), 0);
    assert!(
        out.step("fetch")["log"]
            .as_str()
            .unwrap()
            .contains("denied")
    );
}

#[test]
fn a_slow_or_dripping_server_trips_the_time_limit() {
    let server = Server::start();
    for path in ["/slow", "/loris"] {
        let job = TestJob::new(&one_job(
            &format!(r#"url = "{}""#, server.url(path)),
            &format!(
                "allowed_outbound_hosts = [\"{}\"]\nlimits = {{ timeout_secs = 1 }}",
                server.origin()
            ),
        ));
        let started = Instant::now();
        let out = job.run_within(WITHIN, &[]);
        out.assert_code(1);
        assert_eq!(out.step("fetch")["failure"]["kind"], "timeout", "{path}");
        assert!(started.elapsed() < Duration::from_secs(30), "{path}");
    }
}

#[test]
fn a_huge_response_fails_the_step_on_its_memory_limit() {
    let server = Server::start();
    let job = TestJob::new(&fan_job(
        3,
        &format!(r#"url = "{}""#, server.url("/huge")),
        &format!(
            "allowed_outbound_hosts = [\"{}\"]\nlimits = {{ memory_mib = 32, timeout_secs = 60 }}",
            server.origin()
        ),
    ));
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(1);
    for key in ["k0", "k1", "k2"] {
        let step = out.step(&format!("fetch[{key}]"));
        assert_eq!(step["failure"]["kind"], "memory-limit", "{step}");
        // Counted as it came in, up to where the op's memory ran out.
        assert!(step["stats"]["http_received_bytes"].as_u64().unwrap() > 1 << 20);
    }
}

#[test]
fn max_http_requests_caps_a_step() {
    let server = Server::start();
    let job = TestJob::new(&one_job(
        &format!(r#"url = "{}", requests = 5"#, server.url("/ok/x")),
        &format!(
            "allowed_outbound_hosts = [\"{}\"]\nlimits = {{ max_http_requests = 2 }}",
            server.origin()
        ),
    ));
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(1);
    assert_eq!(server.requests(), 2);
    let step = out.step("fetch");
    assert_eq!(step["failure"]["kind"], "output-limit", "{step}");
    let message = step["failure"]["message"].as_str().unwrap();
    assert!(message.contains("max_http_requests = 2"), "{message}");
}

#[test]
fn secrets_come_from_the_environment_and_are_redacted() {
    let server = Server::start();
    let secret = "tok-3f9a-very-secret";
    let job = TestJob::new(&one_job(
        &format!(
            r#"url = "{}", auth_env = "API_TOKEN", print_env = "API_TOKEN""#,
            server.url("/ok/x")
        ),
        &format!(
            "allowed_outbound_hosts = [\"{}\"]\nsecrets = {{ API_TOKEN = \"DYNHOST_TEST_SECRET\" }}",
            server.origin()
        ),
    ));
    let mut command = crate::support::command(job.dir(), &["run", "--json", "job.toml"]);
    command.env("DYNHOST_TEST_SECRET", secret);
    let out = crate::support::output(command);
    out.assert_code(0);
    // The service got the real value...
    let log = server.seen.log.lock().unwrap().clone();
    assert_eq!(log[0].1, secret);
    // ...and nothing dynhost shows or stores has it.
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    assert!(
        out.step("fetch")["stdout"]
            .as_str()
            .unwrap()
            .contains("API_TOKEN=[redacted API_TOKEN]")
    );
    for entry in std::fs::read_dir(job.dir().join(".dynhost")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
    // Without the variable, the run does not start.
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("op `fetch`")
            && out.stderr.contains("DYNHOST_TEST_SECRET")
            && out.stderr.contains("not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_service_settings_are_refused_before_running() {
    let cases = [
        (
            "allowed_outbound_hosts = [\"api.example.com\"]",
            "scheme://host[:port]",
        ),
        (
            "allowed_outbound_hosts = [\"https://x.org/path\"]",
            "no paths",
        ),
        (
            "allowed_outbound_hosts = [\"https://x.org\"]\ndeterministic = true",
            "`deterministic = true` cannot go with `allowed_outbound_hosts`",
        ),
        ("resources = [\"nope\"]", "`resources` names `nope`"),
        ("max_concurrent = 0", "`max_concurrent` must be at least 1"),
        (
            "limits = { max_http_requests = 0 }",
            "`max_http_requests` must be above 0",
        ),
    ];
    for (extra, want) in cases {
        let job = TestJob::new(&one_job(r#"url = "http://x""#, extra));
        let out = dynhost_within(job.dir(), &["validate", "job.toml"], WITHIN);
        out.assert_code(2);
        assert!(
            out.stderr.contains("job.toml") && out.stderr.contains(want),
            "{extra}: {}",
            out.stderr
        );
    }
    for (table, want) in [
        ("[resources.api]\n", "sets no limit"),
        ("[resources.api]\nrate = \"fast\"\n", "\"50/s\""),
        (
            "[resources.api]\nmax_concurrent = 2\nburst = 3\n",
            "`burst` needs a `rate`",
        ),
    ] {
        let job = TestJob::new(&format!("{}{table}", one_job(r#"url = "http://x""#, "")));
        let out = dynhost_within(job.dir(), &["validate", "job.toml"], WITHIN);
        out.assert_code(2);
        assert!(
            out.stderr.contains("[resources.api]") && out.stderr.contains(want),
            "{table}: {}",
            out.stderr
        );
    }
}

#[test]
fn max_concurrent_caps_an_op_whatever_the_workers() {
    let server = Server::start();
    let job = TestJob::new(&fan_job(
        12,
        &format!(r#"url = "{}""#, server.url("/hold/150")),
        &format!(
            "allowed_outbound_hosts = [\"{}\"]\nmax_concurrent = 2",
            server.origin()
        ),
    ));
    let out = job.run_within(WITHIN, &["--max-concurrent", "8"]);
    out.assert_code(0);
    assert_eq!(server.requests(), 12);
    assert_eq!(
        server.max_in_flight(),
        2,
        "capped at 2, and the cap was reached"
    );
    let waiting = out.steps_with("step_waiting");
    assert!(waiting.len() >= 8, "{waiting:?}");
    let event = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_waiting")
        .unwrap();
    assert_eq!(event["waiting_for"], "the op's max_concurrent = 2");
    // 12 steps of 150 ms, 2 at a time: the later ones wait 150 ms to 750 ms.
    let waited = &out.op_summary("fetch")["waited"];
    assert!(waited["secs"].as_u64().unwrap() >= 2, "{waited}");
    let plain = dynhost_within(
        job.dir(),
        &[
            "run",
            "job.toml",
            "--max-concurrent",
            "8",
            "--progress-secs",
            "0.1",
        ],
        WITHIN,
    );
    plain.assert_code(0);
    assert!(
        plain.stderr.contains("fetch: steps waited"),
        "{}",
        plain.stderr
    );
    // Progress lines say how many wait.
    assert!(
        plain.stderr.contains("waiting for limits"),
        "{}",
        plain.stderr
    );
    // The store keeps each step's wait.
    let run = out.finished()["run_id"].as_str().unwrap().to_owned();
    let show = dynhost_within(job.dir(), &["show", &run, "fetch[k11]"], WITHIN);
    show.assert_code(0);
    let waited: f64 = show
        .stdout
        .split("waited ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("{}", show.stdout));
    assert!(waited > 0.1, "{}", show.stdout);
}

#[test]
fn a_waiting_step_holds_no_worker() {
    // `slow` may run one step at a time (300 ms each); `fast` has no limit.
    // With two workers, a parked `slow` step holding one would make `fast`
    // wait behind it; instead every `fast` key finishes while `slow` still
    // has keys waiting.
    let server = Server::start();
    let job = TestJob::new(&format!(
        r#"name = "mixed"
[ops.emit]
component = "{{probe}}"
dynamic = true
config = {{ emit_count = 6 }}
[ops.slow]
component = "{{fetch}}"
inputs = {{ k = {{ map = "emit" }} }}
config = {{ url = "{}" }}
allowed_outbound_hosts = ["{}"]
max_concurrent = 1
[ops.fast]
component = "{{probe}}"
inputs = {{ k = {{ map = "emit" }} }}
"#,
        server.url("/hold/300"),
        server.origin()
    ));
    let out = job.run_within(WITHIN, &["--max-concurrent", "2"]);
    out.assert_code(0);
    let finished = out.steps_with("step_finished");
    let last_fast = finished
        .iter()
        .rposition(|s| s.starts_with("fast["))
        .unwrap();
    let slow_before: usize = finished[..last_fast]
        .iter()
        .filter(|s| s.starts_with("slow["))
        .count();
    assert!(slow_before <= 2, "fast waited behind slow: {finished:?}");
    assert_eq!(server.max_in_flight(), 1);
}

/// Two ops share `[resources.api]`: the server never sees more at once.
pub(crate) fn resource_job(server: &Server, keys: u64, limits: &str, hold_ms: u64) -> String {
    let url = server.url(&format!("/hold/{hold_ms}"));
    let allowed = server.origin();
    format!(
        r#"name = "shared"
[resources.api]
{limits}
[ops.emit]
component = "{{probe}}"
dynamic = true
config = {{ emit_count = {keys} }}
[ops.a]
component = "{{fetch}}"
inputs = {{ k = {{ map = "emit" }} }}
config = {{ url = "{url}" }}
allowed_outbound_hosts = ["{allowed}"]
resources = ["api"]
[ops.b]
component = "{{fetch}}"
inputs = {{ k = {{ map = "emit" }} }}
config = {{ url = "{url}" }}
allowed_outbound_hosts = ["{allowed}"]
resources = ["api"]
"#
    )
}

#[test]
fn a_resource_caps_the_ops_that_share_it() {
    let server = Server::start();
    let job = TestJob::new(&resource_job(&server, 10, "max_concurrent = 3", 150));
    let out = job.run_within(WITHIN, &["--max-concurrent", "8"]);
    out.assert_code(0);
    assert_eq!(server.requests(), 20);
    assert_eq!(server.max_in_flight(), 3);
    let event = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_waiting")
        .unwrap();
    assert_eq!(event["waiting_for"], "resource `api` (max_concurrent 3)");
}

#[test]
fn a_rate_limit_holds_over_hundreds_of_keys() {
    let server = Server::start();
    let job = TestJob::new(&resource_job(
        &server,
        150,
        "rate = \"100/s\"\nburst = 5",
        0,
    ));
    let out = job.run_within(WITHIN, &["--max-concurrent", "4"]);
    out.assert_code(0);
    let mut times: Vec<Instant> = server
        .seen
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.2)
        .collect();
    times.sort();
    assert_eq!(times.len(), 300);
    // 300 starts at 100/s with a burst of 5 take at least 2.95 s; within
    // any 0.5 s there are at most 50 + 5 (and some slack for the server
    // seeing requests later than their start).
    let span = times[times.len() - 1] - times[0];
    assert!(span >= Duration::from_millis(2_800), "{span:?}");
    for (i, first) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|t| **t - *first < Duration::from_millis(500))
            .count();
        assert!(within <= 55 + 8, "{within} requests within 0.5 s");
    }
}

#[test]
fn two_runs_sharing_a_store_share_a_resource() {
    let server = Server::start();
    let job = TestJob::new(&resource_job(&server, 6, "max_concurrent = 2", 300));
    let args = ["run", "--json", "job.toml", "--max-concurrent", "6"];
    let mut first = Running::start(job.dir(), &args);
    let mut second = Running::start(job.dir(), &args);
    assert_eq!(first.wait(WITHIN), 0, "{}", first.stderr());
    assert_eq!(second.wait(WITHIN), 0, "{}", second.stderr());
    assert_eq!(server.requests(), 24);
    assert_eq!(server.max_in_flight(), 2, "two runs, one limit");
}

/// Builds the Python fixture `tests/guests/python-fetch` (its WIT world is
/// dynhost's plus `wasi:http/outgoing-handler`) with componentize-py.
fn python_fetch() -> Option<std::path::PathBuf> {
    if std::env::var_os("DYNHOST_SKIP_POLYGLOT").is_some() {
        println!("SKIPPED the Python HTTP op: DYNHOST_SKIP_POLYGLOT is set");
        return None;
    }
    let src = crate::support::root().join("tests/guests/python-fetch");
    let out = crate::support::root().join("target/guests/polyglot/python_fetch.wasm");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let status = std::process::Command::new("componentize-py")
        .current_dir(&src)
        .args(["-d", "wit", "-w", "fetch-op", "componentize", "app", "-o"])
        .arg(&out)
        .status()
        .expect("componentize-py (tests/toolchains.sh installs it)");
    assert!(status.success(), "componentize-py failed");
    Some(out)
}

#[test]
fn a_python_op_calls_an_allowed_host_and_nothing_else() {
    let Some(component) = python_fetch() else {
        return;
    };
    let server = Server::start();
    let other = Server::start();
    let job = TestJob::new(
        &fan_job(
            3,
            &format!(r#"url = "{}""#, server.url("/ok/{key}")),
            &format!(r#"allowed_outbound_hosts = ["{}"]"#, server.origin()),
        )
        .replace("{fetch}", &component.display().to_string()),
    );
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(0);
    assert_eq!(out.output("fetch[k1]")["body"], "hello k1 (0 bytes in)");
    assert_eq!(out.op_summary("fetch")["http_requests"], 3);
    // The same op pointed at a host it was not given fails, logged.
    job.rewrite(
        &one_job(
            &format!(r#"url = "{}""#, other.url("/ok/x")),
            &format!(r#"allowed_outbound_hosts = ["{}"]"#, server.origin()),
        )
        .replace("{fetch}", &component.display().to_string()),
    );
    let out = job.run_within(WITHIN, &[]);
    out.assert_code(1);
    let step = out.step("fetch");
    assert!(
        step["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTPRequestDenied")
            || step["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("HttpRequestDenied"),
        "{step}"
    );
    assert!(step["log"].as_str().unwrap().contains("denied"), "{step}");
    assert_eq!(other.requests(), 0);
}
