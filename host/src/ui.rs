//! `dynhost ui`: a local, read-only web viewer over the run store.
//!
//! Server-rendered HTML (askama templates, checked at compile time and
//! escaping everything by default, so nothing an op logged or returned can
//! become markup), served by axum on a small tokio runtime. Every page reads
//! a bounded slice of the store (see `store::sqlite::browse`), so a run with
//! a million keys opens as fast as a small one. Pages follow running runs by
//! polling the store's event cursor (`/api/cursor`) from a few lines of our
//! own JavaScript (`static/live.js`); a Content-Security-Policy allows no
//! inline script at all.
//!
//! The viewer offers no actions (it never writes to the store), so it needs
//! no CSRF protection; it binds to 127.0.0.1 unless told otherwise.

use crate::graph::{self, OpBox, OpState};
use crate::plan::Plan;
use crate::plan::lock::Locked;
use crate::store::{RunStore, RunSummary, SqliteStore, StepRow, StoreError};
use crate::store::{StepCount, StepFilter};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Steps per page of an op.
pub const PAGE_SIZE: usize = 100;

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The address cannot be bound.
    #[error(
        "cannot listen on {addr}: {error} (pick another port with --port, or 0 for any free one)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (in the message already: not a `source`, printed twice).
        error: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the viewer stopped: {0}")]
    Serve(std::io::Error),
}

/// What the pages read, shared by the request handlers.
struct App {
    store: Mutex<SqliteStore>,
    /// The store directory, as `--store` would name it (for resume commands).
    store_dir: String,
    /// How long an op page writes out a large run's packed steps before it
    /// answers with its progress instead ([`UNPACK_SLICE`]).
    unpack_slice: Duration,
}

/// A new run's plain steps are stored packed and written out as rows by
/// the first full read (`SqliteStore::unpack`): for a million-step run,
/// seconds. An op page does that a slice at a time, answering with the
/// progress and reloading until it is done, so the first look at such a
/// run neither hangs the browser nor holds the store (one connection behind
/// a lock) from every other page for more than a slice.
const UNPACK_SLICE: Duration = Duration::from_millis(300);

/// Serves the viewer on `addr` until the process ends; `ready` gets the
/// address actually bound (port 0 picks a free one) before the first request.
///
/// # Errors
/// [`UiError`] if the address cannot be bound or the server fails.
pub fn serve(
    store: SqliteStore,
    store_dir: String,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), UiError> {
    let app = Arc::new(App {
        store: Mutex::new(store),
        store_dir,
        unpack_slice: UNPACK_SLICE,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UiError::Serve)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| UiError::Bind { addr, error })?;
        let bound = listener.local_addr().map_err(UiError::Serve)?;
        ready(bound);
        axum::serve(listener, router(app))
            .await
            .map_err(UiError::Serve)
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/ops/{op}", get(op_page))
        .route("/runs/{run}/ops/{op}/step", get(step_page))
        .route("/runs/{run}/ops/{op}/raw", get(raw_value))
        .route("/api/cursor", get(cursor))
        .route("/static/live.js", get(live_js))
        .route("/static/viewer.css", get(viewer_css))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(app)
}

/// No inline script, no third-party anything, no framing.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A page that could not be made: a status and a message.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html><title>dynhost</title><h1>{}</h1><p>{}</p><p><a href=\"/\">All runs</a></p>",
            self.0,
            escape(&self.1)
        );
        (self.0, Html(body)).into_response()
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type PageResult = Result<Html<String>, PageError>;

/// Runs `read` against the store off the async threads.
async fn with_store<T: Send + 'static>(
    app: &Arc<App>,
    read: impl FnOnce(&SqliteStore, &str) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let store = app.store.lock().unwrap_or_else(|e| e.into_inner());
        read(&store, &app.store_dir)
    })
    .await
    .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

const STATUSES: [&str; 3] = ["succeeded", "failed", "skipped"];
const RUN_STATUSES: [&str; 4] = ["running", "succeeded", "failed", "interrupted"];

#[derive(Deserialize, Default)]
struct RunsQuery {
    job: Option<String>,
    status: Option<String>,
}

struct RunLine {
    id: String,
    job: String,
    status: String,
    started: String,
    duration: String,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    tolerated: u64,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsTemplate {
    cursor: i64,
    store: String,
    jobs: Vec<String>,
    statuses: [&'static str; 4],
    job: Option<String>,
    status: Option<String>,
    runs: Vec<RunLine>,
}

async fn runs_page(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> PageResult {
    with_store(&app, move |store, dir| {
        let cursor = store.cursor()?;
        let all = store.runs()?;
        let mut jobs: Vec<String> = all.iter().map(|r| r.job.clone()).collect();
        jobs.sort();
        jobs.dedup();
        let job = q.job.filter(|j| !j.is_empty());
        let status = q.status.filter(|s| !s.is_empty());
        let runs = all
            .iter()
            .filter(|r| job.as_ref().is_none_or(|j| *j == r.job))
            .filter(|r| status.as_ref().is_none_or(|s| *s == r.status))
            .map(|r| RunLine {
                id: r.id.clone(),
                job: r.job.clone(),
                status: r.status.clone(),
                started: time(r.started_at),
                duration: duration(r),
                succeeded: r.succeeded,
                failed: r.failed,
                skipped: r.skipped,
                tolerated: r.tolerated,
            })
            .collect();
        let page = RunsTemplate {
            cursor,
            store: dir.to_owned(),
            jobs,
            statuses: RUN_STATUSES,
            job,
            status,
            runs,
        };
        Ok(Html(page.render()?))
    })
    .await
}

struct OpLine {
    name: String,
    state: &'static str,
    colour: &'static str,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    tolerated: u64,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunTemplate {
    cursor: i64,
    store: String,
    run: RunSummary,
    job_hash: String,
    started: String,
    duration: String,
    resume: String,
    graph: String,
    ops: Vec<OpLine>,
    config: String,
}

/// Per op name: (succeeded, failed, skipped, tolerated).
fn tally(counts: &[StepCount]) -> BTreeMap<&str, [u64; 4]> {
    let mut by_op: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for c in counts {
        let t = by_op.entry(c.op.as_str()).or_default();
        if c.tolerated {
            t[3] += c.n;
        } else {
            match c.status.as_str() {
                "succeeded" => t[0] += c.n,
                "failed" => t[1] += c.n,
                _ => t[2] += c.n,
            }
        }
    }
    by_op
}

/// How an op's box is coloured, from its counts and whether the run goes on.
fn op_state(plan_op: Option<&crate::plan::PlannedOp>, t: [u64; 4], running: bool) -> OpState {
    let [ok, failed, skipped, tolerated] = t;
    let root = plan_op.is_some_and(|o| o.scope.is_empty());
    if failed > 0 {
        OpState::Failed
    } else if tolerated > 0 {
        OpState::Tolerated
    } else if running && !(root && ok + skipped > 0) {
        if ok + skipped > 0 {
            OpState::Running
        } else {
            OpState::Pending
        }
    } else if ok > 0 {
        OpState::Succeeded
    } else if skipped > 0 {
        OpState::Skipped
    } else {
        OpState::Pending
    }
}

fn counts_line(t: [u64; 4]) -> String {
    let [ok, failed, skipped, tolerated] = t;
    let mut parts = vec![format!("{ok} ok")];
    for (n, what) in [
        (failed, "failed"),
        (skipped, "skipped"),
        (tolerated, "tolerated"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(" · ")
}

fn not_found(what: String) -> PageError {
    PageError(StatusCode::NOT_FOUND, what)
}

fn find_run(store: &SqliteStore, run_id: &str) -> Result<RunSummary, PageError> {
    match store.run(run_id) {
        Ok(run) => Ok(run),
        Err(e @ (StoreError::UnknownRun { .. } | StoreError::AmbiguousRun { .. })) => {
            Err(not_found(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_page(State(app): State<Arc<App>>, Path(run_id): Path<String>) -> PageResult {
    with_store(&app, move |store, dir| {
        let cursor = store.cursor()?;
        let run = find_run(store, &run_id)?;
        let run_id = run.id.clone();
        let counts = store.step_counts(&run_id)?;
        let by_op = tally(&counts);
        let locked = store.run_plan(&run_id)?;
        let (plan, job_hash): (Option<Plan>, String) = match locked {
            Some((json, hash)) => (
                Locked::from_json(json.as_bytes()).ok().map(|l| l.plan),
                hash,
            ),
            None => (None, String::new()),
        };
        let running = run.status == "running";
        let names: Vec<String> = match &plan {
            Some(plan) => plan.ops.iter().map(|o| o.name.clone()).collect(),
            None => by_op.keys().map(|s| (*s).to_owned()).collect(),
        };
        let ops: Vec<OpLine> = names
            .iter()
            .map(|name| {
                let t = by_op.get(name.as_str()).copied().unwrap_or_default();
                let planned = plan
                    .as_ref()
                    .and_then(|p| p.ops.iter().find(|o| o.name == *name));
                let state = op_state(planned, t, running);
                OpLine {
                    name: name.clone(),
                    state: state.as_str(),
                    colour: state.colour(),
                    succeeded: t[0],
                    failed: t[1],
                    skipped: t[2],
                    tolerated: t[3],
                }
            })
            .collect();
        let graph = match &plan {
            Some(plan) => {
                let boxes: Vec<OpBox> = plan
                    .ops
                    .iter()
                    .map(|o| {
                        let t = by_op.get(o.name.as_str()).copied().unwrap_or_default();
                        OpBox {
                            state: op_state(Some(o), t, running),
                            counts: counts_line(t),
                        }
                    })
                    .collect();
                graph::draw(plan, graph::Format::Svg, Some(&boxes))
                    .unwrap_or_else(|e| format!("<p>{}</p>", escape(&e.to_string())))
            }
            None => "<p>This run was recorded before dynhost kept plans; no graph.</p>".into(),
        };
        let config = run
            .config
            .as_deref()
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_default();
        let page = RunTemplate {
            cursor,
            store: dir.to_owned(),
            job_hash,
            started: time(run.started_at),
            duration: duration(&run),
            resume: format!("dynhost resume {} --store {}", run.id, shell_word(dir)),
            graph,
            ops,
            config,
            run,
        };
        Ok(Html(page.render()?))
    })
    .await
}

#[derive(Deserialize, Default)]
struct OpQuery {
    status: Option<String>,
    q: Option<String>,
    after: Option<i64>,
    after_keys: Option<String>,
}

struct StepLine {
    keys: String,
    href: String,
    status: String,
    tolerated: bool,
    attempts: u32,
    time: String,
    memory: String,
    fuel: String,
    failure: String,
}

#[derive(Template)]
#[template(path = "op.html")]
struct OpTemplate {
    cursor: i64,
    store: String,
    run_id: String,
    op: String,
    statuses: [&'static str; 3],
    status: Option<String>,
    q: String,
    steps: Vec<StepLine>,
    next: Option<String>,
    /// The run is still being written out (see [`UNPACK_SLICE`]): what is
    /// left, shown instead of the steps; the page reloads.
    preparing: Option<String>,
}

async fn op_page(
    State(app): State<Arc<App>>,
    Path((run_id, op)): Path<(String, String)>,
    Query(query): Query<OpQuery>,
) -> PageResult {
    let slice = app.unpack_slice;
    with_store(&app, move |store, dir| {
        let cursor = store.cursor()?;
        let run_id = find_run(store, &run_id)?.id;
        let status = query.status.filter(|s| !s.is_empty());
        let q = query.q.unwrap_or_default();
        // Failed and skipped steps are never packed.
        let all_written = matches!(status.as_deref(), Some("failed" | "skipped"))
            || store.unpack_until(&run_id, Some(Instant::now() + slice))?;
        let after = query
            .after
            .map(|p| (p, query.after_keys.unwrap_or_default()));
        let (steps, next, preparing) = if all_written {
            let (steps, next) = op_steps(store, (&run_id, &op), (status.as_deref(), &q), after)?;
            (steps, next, None)
        } else {
            let (steps, items) = store.packed_at_most(&run_id)?;
            let progress = format!(
                "Writing out this run's steps for browsing, a slice per visit: at most \
                 {steps} steps and {items} emitted items left. The first look at a large \
                 run does this once; this page reloads until it is done."
            );
            (Vec::new(), None, Some(progress))
        };
        let page = OpTemplate {
            cursor,
            store: dir.to_owned(),
            run_id,
            op,
            statuses: STATUSES,
            status,
            q,
            steps,
            next,
            preparing,
        };
        Ok(Html(page.render()?))
    })
    .await
}

/// One page of an op's steps as the op page lists them, and the link to
/// the next page.
fn op_steps(
    store: &SqliteStore,
    (run_id, op): (&str, &str),
    (status, q): (Option<&str>, &str),
    after: Option<(i64, String)>,
) -> Result<(Vec<StepLine>, Option<String>), PageError> {
    // The output the op is mapped over (from the plan the run ran),
    // whose items give the emission order.
    let emitter = store
        .run_plan(run_id)?
        .and_then(|(json, _)| Locked::from_json(json.as_bytes()).ok())
        .and_then(|locked| {
            let plan = locked.plan;
            let op = plan.ops.iter().find(|o| o.name == op)?;
            let last = op.scope.last()?;
            Some((plan.ops[last.op].name.clone(), last.output.clone()))
        });
    let filter = StepFilter {
        status: status.map(str::to_owned),
        key: (!q.is_empty()).then(|| q.to_owned()),
        after,
        emitter,
    };
    let page = store.step_page(run_id, op, &filter, PAGE_SIZE)?;
    let base = format!("/runs/{}/ops/{}", url(run_id), url(op));
    let steps = page
        .steps
        .iter()
        .map(|s| StepLine {
            keys: keys_label(&s.keys),
            href: format!("{base}/step?keys={}", url(&keys_param(&s.keys))),
            status: s.status.clone(),
            tolerated: s.tolerated,
            attempts: s.attempts,
            time: secs(s.wall_secs),
            memory: bytes(s.peak_memory_bytes),
            fuel: s.fuel_used.map(|f| f.to_string()).unwrap_or_default(),
            failure: s.failure_kind.clone().unwrap_or_default(),
        })
        .collect();
    let next = page.next.map(|(position, keys)| {
        let mut link = format!("{base}?after={position}&after_keys={}", url(&keys));
        if let Some(s) = status {
            link.push_str(&format!("&status={}", url(s)));
        }
        if !q.is_empty() {
            link.push_str(&format!("&q={}", url(q)));
        }
        link
    });
    Ok((steps, next))
}

#[derive(Deserialize)]
struct StepQuery {
    /// The step's keys as a JSON array (`[]` outside any map).
    keys: String,
}

#[derive(Template)]
#[template(path = "step.html")]
struct StepTemplate {
    cursor: i64,
    store: String,
    run_id: String,
    op: String,
    name: String,
    step: StepRow,
    time: String,
    memory: String,
    fuel: String,
    services: String,
    inputs: String,
    output_size: Option<usize>,
    output_kind: &'static str,
    output_preview: String,
    raw_href: String,
    metadata: String,
}

fn parse_keys(text: &str) -> Result<Vec<String>, PageError> {
    serde_json::from_str(text).map_err(|_| {
        PageError(
            StatusCode::BAD_REQUEST,
            format!("`keys` must be a JSON array of strings, not `{text}`"),
        )
    })
}

async fn step_page(
    State(app): State<Arc<App>>,
    Path((run_id, op)): Path<(String, String)>,
    Query(query): Query<StepQuery>,
) -> PageResult {
    with_store(&app, move |store, dir| {
        let cursor = store.cursor()?;
        let run_id = find_run(store, &run_id)?.id;
        let keys = parse_keys(&query.keys)?;
        let name = step_label(&op, &keys);
        let step = store
            .step(&run_id, &op, &keys)?
            .ok_or_else(|| not_found(format!("no step `{name}` in run `{run_id}`")))?;
        let output = store.step_output(&run_id, &op, &keys)?;
        let (output_kind, output_preview) = match &output {
            Some(bytes) => preview(bytes),
            None => ("none", String::new()),
        };
        let pretty = |text: Option<&str>| {
            text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_default()
        };
        let page = StepTemplate {
            cursor,
            store: dir.to_owned(),
            raw_href: format!(
                "/runs/{}/ops/{}/raw?keys={}",
                url(&run_id),
                url(&op),
                url(&query.keys)
            ),
            run_id,
            op,
            name,
            time: secs(step.wall_secs),
            memory: bytes(step.peak_memory_bytes),
            fuel: step.fuel_used.map(|f| f.to_string()).unwrap_or_default(),
            services: step
                .services
                .as_deref()
                .map(crate::store::services_line)
                .unwrap_or_default(),
            inputs: pretty(step.inputs.as_deref()),
            metadata: pretty(step.metadata.as_deref()),
            output_size: output.as_ref().map(|b| b.len()),
            output_kind,
            output_preview,
            step,
        };
        Ok(Html(page.render()?))
    })
    .await
}

async fn raw_value(
    State(app): State<Arc<App>>,
    Path((run_id, op)): Path<(String, String)>,
    Query(query): Query<StepQuery>,
) -> Result<Response, PageError> {
    let bytes = with_store(&app, move |store, _| {
        let keys = parse_keys(&query.keys)?;
        store
            .step_output(&run_id, &op, &keys)?
            .ok_or_else(|| not_found("that step has no stored value".into()))
    })
    .await?;
    // Always bytes to download, never a document the browser renders.
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment"),
        ],
        bytes.to_vec(),
    )
        .into_response())
}

async fn cursor(State(app): State<Arc<App>>) -> Result<Response, PageError> {
    let cursor = with_store(&app, |store, _| Ok(store.cursor()?)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"cursor\":{cursor}}}"),
    )
        .into_response())
}

async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        include_str!("../static/live.js"),
    )
        .into_response()
}

async fn viewer_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        include_str!("../static/viewer.css"),
    )
        .into_response()
}

/// A value for display: pretty JSON, text, or a hex dump of the first bytes.
fn preview(bytes: &[u8]) -> (&'static str, String) {
    const TEXT_MAX: usize = 64 * 1024;
    const HEX_MAX: usize = 512;
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
                && let Ok(pretty) = serde_json::to_string_pretty(&json)
            {
                return ("json", cut(pretty, TEXT_MAX));
            }
            ("text", cut(text.to_owned(), TEXT_MAX))
        }
        Err(_) => {
            let mut out = String::new();
            for (i, chunk) in bytes[..bytes.len().min(HEX_MAX)].chunks(16).enumerate() {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                out.push_str(&format!("{:08x}  {}\n", i * 16, hex.join(" ")));
            }
            if bytes.len() > HEX_MAX {
                out.push_str("…\n");
            }
            ("hex", out)
        }
    }
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str("\n… (cut; download the raw bytes for all of it)");
    }
    text
}

fn escape(text: &str) -> String {
    askama::filters::escape(text, askama::filters::Html)
        .map(|e| e.to_string())
        .unwrap_or_default()
}

fn url(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `op[k1][k2]`.
fn step_label(op: &str, keys: &[String]) -> String {
    let mut name = op.to_owned();
    for key in keys {
        name.push('[');
        name.push_str(key);
        name.push(']');
    }
    name
}

fn keys_param(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into())
}

fn keys_label(keys: &[String]) -> String {
    if keys.is_empty() {
        "(no keys)".into()
    } else {
        keys.join(" › ")
    }
}

/// A directory as one shell word, for a command to copy.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn time(secs: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn duration(run: &RunSummary) -> String {
    match (run.active_secs, run.finished_at) {
        (Some(active), Some(_)) => secs(active),
        (_, Some(end)) => secs(end - run.started_at),
        _ => "running".into(),
    }
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / KIB / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_pick_json_text_or_hex() {
        assert_eq!(preview(br#"{"a":1}"#).0, "json");
        assert!(preview(br#"{"a":1}"#).1.contains("\"a\": 1"));
        assert_eq!(preview(b"hello").0, "text");
        let (kind, hex) = preview(&[0xff, 0x00, 0x41]);
        assert_eq!(kind, "hex");
        assert!(hex.starts_with("00000000  ff 00 41"), "{hex}");
    }

    #[test]
    fn op_state_follows_counts_and_run() {
        assert_eq!(op_state(None, [3, 1, 0, 0], false), OpState::Failed);
        assert_eq!(op_state(None, [3, 0, 0, 2], false), OpState::Tolerated);
        assert_eq!(op_state(None, [3, 0, 0, 0], true), OpState::Running);
        assert_eq!(op_state(None, [0, 0, 0, 0], true), OpState::Pending);
        assert_eq!(op_state(None, [3, 0, 0, 0], false), OpState::Succeeded);
        assert_eq!(op_state(None, [0, 0, 2, 0], false), OpState::Skipped);
    }

    #[test]
    fn urls_and_shell_words_are_quoted() {
        assert_eq!(url("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(shell_word("/tmp/x"), "/tmp/x");
        assert_eq!(shell_word("/tmp/it's here"), "'/tmp/it'\\''s here'");
    }
}

#[cfg(test)]
mod unpacking_tests {
    use super::*;
    use crate::store::sqlite::tests::plain_success;
    use crate::store::{RunRecord, RunStore, Write};

    /// The first look at a large run's op page writes it out a slice per
    /// visit, answering with its progress (and reloading) until the rows
    /// are all there; then the page lists the steps as before. A page of
    /// failed steps answers at once: they are never packed.
    #[test]
    fn a_large_runs_op_page_writes_it_out_a_slice_per_visit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
        store
            .begin_run(&RunRecord {
                id: "r1".into(),
                job: "j".into(),
                job_file: "job.toml".into(),
                job_hash: "h".into(),
                config: "{}".into(),
                plan: String::new(),
            })
            .unwrap();
        // More packs than one transaction writes out (64 of 128 steps).
        let n = 128 * 70;
        // Plain successes of op `a` (keys `k0`…), as a new run packs them.
        let steps: Vec<Write> = (0..n)
            .map(|i| Write::Step(Box::new(plain_success(i))))
            .collect();
        store.record("r1", &steps).unwrap();
        assert_eq!(store.packed_at_most("r1").unwrap(), (70 * 128, 0));
        let app = Arc::new(App {
            store: Mutex::new(store),
            store_dir: "store".into(),
            unpack_slice: Duration::ZERO,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let visit = |query: OpQuery| -> String {
            let path = Path(("r1".to_owned(), "a".to_owned()));
            match runtime.block_on(op_page(State(app.clone()), path, Query(query))) {
                Ok(page) => page.0,
                Err(PageError(code, message)) => panic!("{code}: {message}"),
            }
        };
        let failed = visit(OpQuery {
            status: Some("failed".into()),
            ..OpQuery::default()
        });
        assert!(!failed.contains("id=\"preparing\""), "{failed}");
        assert!(failed.contains("No steps match"), "{failed}");

        let first = visit(OpQuery::default());
        assert!(first.contains("id=\"preparing\""), "{first}");
        assert!(first.contains("http-equiv=\"refresh\""), "{first}");
        assert!(first.contains("at most 768 steps"), "{first}");
        assert!(!first.contains("id=\"steps\""), "{first}");
        let mut visits = 1;
        let done = loop {
            let page = visit(OpQuery::default());
            visits += 1;
            if !page.contains("id=\"preparing\"") {
                break page;
            }
            assert!(visits < 5, "{page}");
        };
        assert_eq!(visits, 2, "two transactions, one per visit");
        assert!(!done.contains("http-equiv=\"refresh\""), "{done}");
        assert_eq!(done.matches("class=\"step ").count(), PAGE_SIZE);
        assert!(
            done.contains(">k0<") && done.contains("id=\"next\""),
            "{done}"
        );
        let store = app.store.lock().unwrap();
        assert_eq!(store.packed_at_most("r1").unwrap(), (0, 0));
        assert_eq!(store.run("r1").unwrap().succeeded, n as u64);
    }
}
