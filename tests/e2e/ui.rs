//! The web viewer (`dynhost ui`) and graph pictures (`dynhost plan
//! --format`), against real runs: over plain HTTP, and in headless Chromium
//! driven over WebDriver (Debian's `chromium` and `chromium-driver`, from
//! `tests/toolchains.sh`; `DYNHOST_SKIP_BROWSER=1` skips only the browser
//! tests). Screenshots of the main pages go to `target/ui-screenshots/`.

use crate::support::{Running, TestJob, dynhost, root};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// A job with a failing-but-tolerated key and values and logs that try to
/// inject script.
const XSS_JOB: &str = r#"name = "xss"
[ops.split]
component = "{probe}"
dynamic = true
config.emit = [ { key = "a", value = "<script>window.__xss=1</script>" }, { key = "b", value = 2 }, { key = "c", value = 3 } ]
[ops.work]
component = "{probe}"
inputs.v = { map = "split" }
config.print = "<img src=x onerror=window.__xss=2>"
config.on_key = { b = "fail" }
[ops.all]
component = "{probe}"
inputs.vs = { collect = "work", max_failures = 5 }
"#;

/// `dynhost ui --port 0` over the job's store, and its base URL.
pub(crate) struct Viewer {
    _process: Running,
    base: String,
}

impl Viewer {
    pub(crate) fn start(dir: &Path) -> Self {
        let process = Running::start(dir, &["ui", "--port", "0"]);
        let (_, line) = process
            .next_line(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("dynhost ui printed no URL: {}", process.stderr()));
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        Self {
            _process: process,
            base,
        }
    }

    /// GET `path`: (status, headers, body).
    pub(crate) fn get(&self, path: &str) -> (u16, String, String) {
        let authority = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(authority).expect("connect to the viewer");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, head.to_owned(), body.to_owned())
    }
}

fn run_id(job: &TestJob) -> String {
    let out = dynhost(job.dir(), &["runs"]);
    out.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run listed: {}", out.stdout))
        .to_owned()
}

pub(crate) fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn plan_draws_the_job_graph_as_dot_svg_and_mermaid() {
    let job = TestJob::new(XSS_JOB);
    let dot = dynhost(job.dir(), &["plan", "job.toml", "--format", "dot"]);
    dot.assert_code(0);
    assert!(dot.stdout.starts_with("digraph job {"), "{}", dot.stdout);
    assert!(
        dot.stdout.contains("style=dashed, label=\"map result\""),
        "{}",
        dot.stdout
    );
    assert!(dot.stdout.contains("label=\"collect\""), "{}", dot.stdout);
    let svg = dynhost(job.dir(), &["plan", "job.toml", "--format", "svg"]);
    svg.assert_code(0);
    assert!(svg.stdout.starts_with("<svg"), "{}", svg.stdout);
    for op in ["split", "work", "all"] {
        assert!(
            svg.stdout.contains(&format!(">{op}</tspan>")),
            "{op} not drawn"
        );
    }
    let mermaid = dynhost(job.dir(), &["plan", "job.toml", "--format", "mermaid"]);
    mermaid.assert_code(0);
    assert!(
        mermaid.stdout.contains("-.->|map result|"),
        "{}",
        mermaid.stdout
    );
    let bad = dynhost(job.dir(), &["plan", "job.toml", "--format", "png"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

#[test]
fn the_viewer_serves_runs_ops_and_steps_escaped_and_read_only() {
    let job = TestJob::new(XSS_JOB);
    job.run(&[]).assert_code(0);
    let run = run_id(&job);
    // A second, failed run of the same job, and a run of another job.
    job.rewrite(&XSS_JOB.replace("max_failures = 5", "max_failures = 0"));
    job.run(&[]).assert_code(1);
    let failed_run = run_id(&job);
    job.rewrite(&XSS_JOB.replace("name = \"xss\"", "name = \"other\""));
    job.run(&[]).assert_code(0);
    let viewer = Viewer::start(job.dir());

    let (_, _, only_failed) = viewer.get("/?status=failed");
    assert_eq!(
        only_failed.matches("<tr class=\"run ").count(),
        1,
        "{only_failed}"
    );
    assert!(only_failed.contains(&format!("data-run=\"{failed_run}\"")));
    let (_, _, only_xss) = viewer.get("/?job=xss");
    assert_eq!(
        only_xss.matches("<tr class=\"run ").count(),
        2,
        "{only_xss}"
    );
    assert!(!only_xss.contains("<td>other</td>"), "{only_xss}");

    let (status, head, runs) = viewer.get("/");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'; script-src 'self'"),
        "{head}"
    );
    assert!(runs.contains(&format!("data-run=\"{run}\"")), "{runs}");
    assert!(runs.contains("<td class=\"ok\">4</td>"), "{runs}");
    assert!(runs.contains("<td class=\"tolerated\">1</td>"), "{runs}");

    let (status, _, page) = viewer.get(&format!("/runs/{run}"));
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "no graph");
    assert!(
        page.contains("class=\"op state-tolerated\" data-op=\"work\""),
        "{page}"
    );
    assert!(
        page.contains(&format!("dynhost resume {run} --store")),
        "{page}"
    );

    let (status, _, op) = viewer.get(&format!("/runs/{run}/ops/work"));
    assert_eq!(status, 200);
    let rows: Vec<&str> = op.matches("<tr class=\"step ").collect();
    assert_eq!(rows.len(), 3, "{op}");
    // Emission order a, b, c.
    let (a, b, c) = (op.find(">a</a>"), op.find(">b</a>"), op.find(">c</a>"));
    assert!(a < b && b < c, "{op}");

    let (status, _, failed) = viewer.get(&format!(
        "/runs/{run}/ops/work/step?keys={}",
        enc("[\"b\"]")
    ));
    assert_eq!(status, 200);
    assert!(failed.contains("probe was told to fail"), "{failed}");
    assert!(failed.contains("id=\"failure-kind\">op-error"), "{failed}");

    let (_, _, hostile) = viewer.get(&format!(
        "/runs/{run}/ops/work/step?keys={}",
        enc("[\"a\"]")
    ));
    assert!(!hostile.contains("<script>window"), "unescaped value");
    assert!(!hostile.contains("<img src=x"), "unescaped log");
    assert!(hostile.contains("&#60;img src=x onerror=window.__xss=2&#62; (log)"));

    let (status, head, raw) =
        viewer.get(&format!("/runs/{run}/ops/work/raw?keys={}", enc("[\"c\"]")));
    assert_eq!(status, 200);
    assert!(head.contains("application/octet-stream"), "{head}");
    assert!(raw.contains("\"keys\":[\"c\"]"), "{raw}");

    let (status, _, missing) = viewer.get("/runs/no-such-run");
    assert_eq!(status, 404);
    assert!(missing.contains("no-such-run"), "{missing}");
    let (status, _, bad) = viewer.get(&format!("/runs/{run}/ops/work/step?keys=nope"));
    assert_eq!(status, 400);
    assert!(bad.contains("JSON array"), "{bad}");
    // Read-only: nothing but GET is routed.
    let authority = viewer.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "POST /runs/{run} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
}

#[test]
fn a_run_whose_process_died_shows_as_interrupted() {
    let job = TestJob::new(
        r#"name = "killed"
[ops.split]
component = "{probe}"
dynamic = true
config.emit_count = 3
[ops.work]
component = "{probe}"
inputs.v = { map = "split" }
config.on_key = { k1 = "sleep" }
"#,
    );
    let running = Running::start(job.dir(), &["run", "--json", "job.toml"]);
    // Two keys finish; k1 sleeps. Kill the process without warning.
    running.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("step_finished") && l.contains("work[k2]")
    });
    running.signal("KILL");
    drop(running);
    let run = run_id(&job);
    let viewer = Viewer::start(job.dir());
    let (_, _, runs) = viewer.get("/");
    assert!(
        runs.contains(&format!(
            "class=\"run status-interrupted\" data-run=\"{run}\""
        )),
        "{runs}"
    );
    let (_, _, page) = viewer.get(&format!("/runs/{run}"));
    assert!(page.contains("id=\"run-status\">interrupted"), "{page}");
    assert!(page.contains(&format!("dynhost resume {run}")), "{page}");
}

#[test]
fn a_port_in_use_is_reported_with_what_to_do() {
    let job = TestJob::new(XSS_JOB);
    job.run(&[]).assert_code(0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = dynhost(job.dir(), &["ui", "--port", &port]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--port, or 0 for any free one"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("in use").count(),
        1,
        "reason said once: {}",
        out.stderr
    );
}

#[test]
fn a_store_without_runs_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let out = dynhost(dir.path(), &["ui", "--store", "nowhere", "--port", "0"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no runs recorded"), "{}", out.stderr);
}

// --- In a real browser -------------------------------------------------

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_skipped() -> bool {
    std::env::var_os("DYNHOST_SKIP_BROWSER").is_some_and(|v| v == "1")
}

fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start chromedriver ({e}): run tests/toolchains.sh (Debian chromium + chromium-driver), or set DYNHOST_SKIP_BROWSER=1"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, port }
}

async fn browser(driver: &Driver) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session in headless Chromium")
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = root().join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the first element `css` finds, waiting up to 10 s for it (a
/// click may still be loading the page). A live page swaps its content in
/// place, so an element found may be gone a moment later: look again then.
async fn text(client: &fantoccini::Client, css: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        match client.find(fantoccini::Locator::Css(css)).await {
            Ok(element) => match element.text().await {
                Ok(text) => return text,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{css}` on the page: {last}");
}

/// The computed background colour of the first element `css` finds.
async fn background(client: &fantoccini::Client, css: &str) -> String {
    client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .css_value("background-color")
        .await
        .unwrap()
}

async fn shot(client: &fantoccini::Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` until it returns true, failing after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn in_chromium_runs_counts_colours_failures_and_no_script_from_ops() {
    if browser_skipped() {
        return;
    }
    let job = TestJob::new(XSS_JOB);
    job.run(&[]).assert_code(0);
    let run = run_id(&job);
    // A second run of the same store in which a key fails for real.
    job.rewrite(&XSS_JOB.replace("max_failures = 5", "max_failures = 0"));
    job.run(&[]).assert_code(1);
    let failed_run = run_id(&job);
    let viewer = Viewer::start(job.dir());
    let driver = start_driver();
    runtime().block_on(async {
        let client = browser(&driver).await;
        client.goto(&format!("{}/", viewer.base)).await.unwrap();
        let rows = client
            .find_all(fantoccini::Locator::Css("tr.run"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "both runs listed");
        let first = text(&client, "tr.run td.status").await;
        assert_eq!(first, "failed", "newest first");
        shot(&client, "runs").await;

        client
            .goto(&format!("{}/runs/{run}", viewer.base))
            .await
            .unwrap();
        let colour = background(&client, "tr.op[data-op=work]").await;
        assert_eq!(colour, "rgba(253, 230, 138, 1)", "tolerated op is amber");
        assert_eq!(text(&client, "tr.op[data-op=work] td.tolerated").await, "1");
        assert_eq!(text(&client, "tr.op[data-op=work] td.ok").await, "2");
        shot(&client, "run").await;

        client
            .goto(&format!("{}/runs/{failed_run}", viewer.base))
            .await
            .unwrap();
        let colour = background(&client, "tr.op[data-op=work]").await;
        assert_eq!(colour, "rgba(254, 202, 202, 1)", "failed op is red");
        assert_eq!(text(&client, "#run-status").await, "failed");

        // The failed key's page, reached by clicking through.
        client
            .find(fantoccini::Locator::Css("tr.op[data-op=work] a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // A click starts a navigation: wait for the next page's element.
        let b = client
            .wait()
            .for_element(fantoccini::Locator::LinkText("b"))
            .await
            .unwrap();
        shot(&client, "op").await;
        b.click().await.unwrap();
        assert_eq!(text(&client, "#step-status").await, "failed");
        assert_eq!(text(&client, "#failure-kind").await, "op-error");
        assert!(
            text(&client, "#failure")
                .await
                .contains("probe was told to fail")
        );
        assert!(text(&client, "#log").await.contains("(log)"));
        shot(&client, "step").await;

        // What the ops logged and returned is shown as text, never run.
        client
            .goto(&format!(
                "{}/runs/{run}/ops/work/step?keys={}",
                viewer.base,
                enc("[\"a\"]")
            ))
            .await
            .unwrap();
        let xss = client
            .execute("return window.__xss === undefined", vec![])
            .await
            .unwrap();
        assert_eq!(
            xss,
            serde_json::Value::Bool(true),
            "op output ran as script"
        );
        assert!(
            text(&client, "#output")
                .await
                .contains("<script>window.__xss=1</script>"),
            "the value is shown as text"
        );
        assert!(text(&client, "#stdout").await.contains("<img src=x"));
        client.close().await.unwrap();
    });
}

#[test]
fn in_chromium_a_hundred_thousand_keys_page_and_search() {
    if browser_skipped() {
        return;
    }
    let job = TestJob::new(
        r#"name = "many"
[defaults]
max_emits = 100000
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 100000
[ops.each]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { k77777 = "fail" }
"#,
    );
    job.run_within(Duration::from_secs(600), &[]).assert_code(1);
    let run = run_id(&job);
    let viewer = Viewer::start(job.dir());
    let driver = start_driver();
    runtime().block_on(async {
        let client = browser(&driver).await;
        client
            .goto(&format!("{}/runs/{run}", viewer.base))
            .await
            .unwrap();
        assert_eq!(text(&client, "tr.op[data-op=each] td.ok").await, "99999");
        assert_eq!(text(&client, "tr.op[data-op=each] td.failed").await, "1");
        client
            .goto(&format!("{}/runs/{run}/ops/each", viewer.base))
            .await
            .unwrap();
        // The first look writes the packed run out, a slice per visit: the
        // page shows its progress and reloads itself until the rows are in.
        let first_page: Vec<String> = keys_once(&client, |keys| !keys.is_empty()).await;
        assert_eq!(first_page.len(), 100);
        assert_eq!(first_page[0], "k0", "emission order, not key order");
        assert_eq!(first_page[10], "k10");
        client
            .find(fantoccini::Locator::Id("next"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // A click starts a navigation; wait for the new page's rows.
        let second = keys_once(&client, |keys| keys.first().is_some_and(|k| k != "k0")).await;
        assert_eq!(second[0], "k100");
        assert_eq!(second.len(), 100);
        // Search by key, and filter by status.
        let search = client
            .find(fantoccini::Locator::Css("input[name=q]"))
            .await
            .unwrap();
        search.send_keys("k9999").await.unwrap();
        client
            .find(fantoccini::Locator::Css("form.filters button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let found = keys_once(&client, |keys| keys.first().is_some_and(|k| k != "k100")).await;
        assert!(found.contains(&"k9999".to_owned()), "{found:?}");
        assert!(found.iter().all(|k| k.contains("k9999")), "{found:?}");
        client
            .goto(&format!(
                "{}/runs/{run}/ops/each?status=failed",
                viewer.base
            ))
            .await
            .unwrap();
        assert_eq!(keys_on_page(&client).await, vec!["k77777".to_owned()]);
        client.close().await.unwrap();
    });
}

/// The keys on the page once `ready` holds for them (a page a click
/// navigated to may still be loading), failing after 20 s.
async fn keys_once(client: &fantoccini::Client, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys = keys_on_page(client).await;
        if ready(&keys) {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the rows wanted: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys in the page's step rows. The page swaps its `<main>` in place
/// when it updates live (or a click navigates), so cells found a moment ago
/// can be gone when read (a stale element): then the rows are read again.
async fn keys_on_page(client: &fantoccini::Client) -> Vec<String> {
    let mut attempts = 0;
    'read: loop {
        attempts += 1;
        let mut keys = Vec::new();
        let cells = match client
            .find_all(fantoccini::Locator::Css("tr.step td:first-child"))
            .await
        {
            Ok(cells) => cells,
            // Between pages (a progress page reloading itself).
            Err(_) if attempts < 50 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'read;
            }
            Err(e) => panic!("cannot find the page's rows: {e}"),
        };
        for cell in cells {
            match cell.text().await {
                Ok(text) => keys.push(text),
                Err(_) if attempts < 50 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'read;
                }
                Err(e) => panic!("cannot read the page's rows: {e}"),
            }
        }
        return keys;
    }
}

#[test]
fn in_chromium_a_running_job_updates_live_without_a_reload() {
    if browser_skipped() {
        return;
    }
    // The emitter pauses 300 ms before each of its 30 items, so mapped
    // steps finish one by one over ~9 s.
    let items: Vec<String> = (0..30)
        .map(|i| format!("{{ key = \"k{i}\", value = {i} }}"))
        .collect();
    let job = TestJob::new(&format!(
        r#"name = "slow"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_sleep_ms = 300
config.emit = [{}]
[ops.each]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
"#,
        items.join(", ")
    ));
    // A quick run first makes the store, so the viewer and the browser are
    // up before the slow run starts (however slow they are to start).
    job.write(
        "quick.toml",
        &format!(
            "name = \"quick\"\n[ops.one]\ncomponent = \"{}\"\n",
            crate::support::probe()
        ),
    );
    dynhost(job.dir(), &["run", "quick.toml"]).assert_code(0);
    let viewer = Viewer::start(job.dir());
    let driver = start_driver();
    let mut running = None;
    runtime().block_on(async {
        let client = browser(&driver).await;
        running = Some(Running::start(job.dir(), &["run", "job.toml"]));
        let deadline = Instant::now() + Duration::from_secs(60);
        let run = loop {
            client.goto(&format!("{}/", viewer.base)).await.unwrap();
            if let Ok(row) = client
                .find(fantoccini::Locator::Css("tr.run[data-job=slow]"))
                .await
            {
                break row.attr("data-run").await.unwrap().unwrap();
            }
            assert!(Instant::now() < deadline, "the run never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        client
            .goto(&format!("{}/runs/{run}", viewer.base))
            .await
            .unwrap();
        // A mark that a reload would wipe.
        client
            .execute("window.__kept = 42; return true", vec![])
            .await
            .unwrap();
        let start: u64 = text(&client, "tr.op[data-op=each] td.ok")
            .await
            .parse()
            .unwrap();
        eventually(Duration::from_secs(30), "the ok count to grow", || async {
            text(&client, "tr.op[data-op=each] td.ok")
                .await
                .parse::<u64>()
                .is_ok_and(|n| n > start + 2)
        })
        .await;
        eventually(Duration::from_secs(60), "the run to finish", || async {
            text(&client, "#run-status").await == "succeeded"
        })
        .await;
        let kept = client
            .execute("return window.__kept", vec![])
            .await
            .unwrap();
        assert_eq!(kept, serde_json::json!(42), "the page reloaded");
        assert_eq!(text(&client, "tr.op[data-op=each] td.ok").await, "30");
        client.close().await.unwrap();
    });
    let mut running = running.expect("the slow run was started");
    assert_eq!(running.wait(Duration::from_secs(60)), 0);
}
