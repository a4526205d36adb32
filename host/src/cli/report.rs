//! Everything the CLI writes. stdout carries results (a summary's outputs, or
//! JSON); stderr carries progress, captured op output and errors.

use dynhost::exec::RunEvent;
use dynhost::key::StepName;
use dynhost::report::RunReport;
use dynhost::{FailureKind, Plan};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Live progress: bars per op on a terminal, plain lines otherwise, JSON
/// events on stdout with `--json`.
pub struct Progress {
    mode: Mode,
    ops: BTreeMap<String, OpProgress>,
    order: Vec<String>,
    /// Per op, the op whose items it is mapped over (its keys are known only
    /// as that op emits them).
    emitter: BTreeMap<String, String>,
}

enum Mode {
    Json,
    Bars(MultiProgress),
    /// No terminal: one line per op that moved, every `every`.
    Plain {
        every: Option<Duration>,
        last: Instant,
    },
}

#[derive(Default)]
struct OpProgress {
    started: u64,
    done: u64,
    failed: u64,
    skipped: u64,
    /// Of `failed` and `skipped`: those a tolerant collect ran without.
    tolerated_failed: u64,
    tolerated_skipped: u64,
    retries: u64,
    /// Steps held back by `max_concurrent` or a resource right now.
    waiting: u64,
    /// When its first step started, for the rate.
    first: Option<Instant>,
    /// `done + skipped` when it was last printed (plain mode).
    printed: u64,
    bar: Option<ProgressBar>,
}

impl OpProgress {
    /// Steps still to finish among those handed out.
    fn running(&self) -> u64 {
        self.started.saturating_sub(self.done)
    }
}

/// How the CLI shows a run's progress.
pub struct ProgressOptions {
    /// JSON events on stdout.
    pub json: bool,
    /// Without a terminal, a progress line per op this often; `None`: never.
    pub plain_every: Option<Duration>,
}

impl Progress {
    pub fn new(options: &ProgressOptions, plan: &Plan) -> Self {
        let mode = if options.json {
            Mode::Json
        } else if std::io::stderr().is_terminal() && options.plain_every.is_some() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Mode::Plain {
                every: options.plain_every,
                last: Instant::now(),
            }
        };
        let order = plan.ops.iter().map(|op| op.name.clone()).collect();
        let emitter = plan
            .ops
            .iter()
            .filter_map(|op| {
                let d = op.scope.last()?;
                Some((op.name.clone(), plan.ops[d.op].name.clone()))
            })
            .collect();
        Self {
            mode,
            ops: BTreeMap::new(),
            order,
            emitter,
        }
    }

    /// The first event of `--json`: which run, of which job, recorded where.
    pub fn started(&self, run_id: &str, job: &str, job_file: &str, store: Option<&Path>) {
        if let Mode::Json = self.mode {
            println_json(&json!({
                "event": "run_started", "ts": now(), "run_id": run_id, "job": job,
                "job_file": job_file, "store": store.map(|p| p.display().to_string()),
            }));
        }
    }

    /// `done/≥known keys`, `emitter running`, rate and ETA for `op`.
    fn status(&self, op: &str) -> String {
        let Some(p) = self.ops.get(op) else {
            return String::new();
        };
        let known = p.started + p.skipped;
        let finished = p.done + p.skipped;
        // Only a mapped op waits for keys; its emitter is still running if
        // it has steps in flight or none finished yet.
        let emitting = self.emitter.get(op).is_some_and(|e| {
            self.ops
                .get(e)
                .is_none_or(|e| e.running() > 0 || e.done == 0)
        });
        let mut text = if emitting {
            format!("{finished} of ≥{known} keys, emitter running")
        } else {
            format!("{finished} of {known} keys")
        };
        // Counted as the summary counts them: tolerated apart.
        let failed = p.failed - p.tolerated_failed.min(p.failed);
        let skipped = p.skipped - p.tolerated_skipped.min(p.skipped);
        let tolerated = p.tolerated_failed + p.tolerated_skipped;
        if failed > 0 || skipped > 0 || tolerated > 0 {
            text.push_str(&format!(", {failed} failed, {skipped} skipped"));
        }
        if tolerated > 0 {
            text.push_str(&format!(", {tolerated} tolerated"));
        }
        if p.waiting > 0 {
            text.push_str(&format!(", {} waiting for limits", p.waiting));
        }
        if let Some(first) = p.first {
            let secs = first.elapsed().as_secs_f64();
            // A rate means something after a second and a few keys.
            if secs >= 1.0 && finished >= 10 {
                let rate = finished as f64 / secs;
                text.push_str(&format!(", {rate:.0} keys/s"));
                if !emitting && finished < known && rate > 0.0 {
                    let eta = (known - finished) as f64 / rate;
                    text.push_str(&format!(", ~{eta:.0}s left"));
                }
            }
        }
        text
    }

    pub fn on_event(&mut self, event: RunEvent<'_>) {
        match &event {
            RunEvent::StepWaiting { op, .. } => self.op(op).waiting += 1,
            RunEvent::StepStarted { op, attempt, .. } => {
                // A gated op's steps start in the order they were held
                // back, so while any wait, a start is one of them.
                let p = self.op(op);
                p.waiting = p.waiting.saturating_sub(1);
                if *attempt == 1 {
                    let p = self.op(op);
                    p.started += 1;
                    p.first.get_or_insert_with(Instant::now);
                }
            }
            RunEvent::StepRetrying { op, .. } => self.op(op).retries += 1,
            RunEvent::StepFinished { op, report, .. } => {
                let p = self.op(op);
                p.done += 1;
                if report.outcome.is_err() {
                    p.failed += 1;
                }
            }
            RunEvent::StepSkipped { op, .. } => self.op(op).skipped += 1,
            RunEvent::StepTolerated {
                op, was_skipped, ..
            } => {
                let p = self.op(op);
                if *was_skipped {
                    p.tolerated_skipped += 1;
                } else {
                    p.tolerated_failed += 1;
                }
            }
            RunEvent::StepReused { op, .. } => {
                let p = self.op(op);
                p.started += 1;
                p.done += 1;
                p.first.get_or_insert_with(Instant::now);
            }
            RunEvent::ItemMetadata { .. } => {}
        }
        match &self.mode {
            Mode::Json => print_event_json(&event),
            Mode::Plain { .. } => {
                self.print_plain(&event);
                self.plain_progress(false);
            }
            Mode::Bars(multi) => {
                let multi = multi.clone();
                self.print_bars(&multi, &event);
            }
        }
    }

    /// Without a terminal: a line per op that moved since the last one, at
    /// most every `every` (and once more at the end).
    fn plain_progress(&mut self, last: bool) {
        let Mode::Plain {
            every: Some(every),
            last: printed_at,
        } = &mut self.mode
        else {
            return;
        };
        if !last && printed_at.elapsed() < *every {
            return;
        }
        *printed_at = Instant::now();
        let mut lines = Vec::new();
        for op in &self.order {
            let Some(p) = self.ops.get(op) else { continue };
            if p.done + p.skipped == p.printed {
                continue;
            }
            lines.push((op.clone(), self.status(op)));
        }
        let mut err = std::io::stderr().lock();
        for (op, status) in lines {
            let _ = writeln!(err, "progress: {op}: {status}");
            if let Some(p) = self.ops.get_mut(&op) {
                p.printed = p.done + p.skipped;
            }
        }
    }

    /// The op's counters (its name is copied only the first time: this
    /// runs twice a step).
    fn op(&mut self, op: &str) -> &mut OpProgress {
        if !self.ops.contains_key(op) {
            self.ops.insert(op.to_owned(), OpProgress::default());
        }
        self.ops.get_mut(op).expect("just inserted")
    }

    fn print_plain(&self, event: &RunEvent<'_>) {
        let lines = step_lines(event);
        if lines.is_empty() {
            return;
        }
        let mut err = std::io::stderr().lock();
        for line in lines {
            let _ = writeln!(err, "{line}");
        }
    }

    fn print_bars(&mut self, multi: &MultiProgress, event: &RunEvent<'_>) {
        for line in step_lines(event) {
            let _ = multi.println(line);
        }
        let op = event.op();
        let width = self.order.iter().map(String::len).max().unwrap_or(8);
        let p = self.ops.entry(op.to_owned()).or_default();
        let bar = p.bar.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix} {bar:30} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("{op:width$}"));
            bar
        });
        bar.set_length(p.started + p.skipped);
        bar.set_position(p.done + p.skipped);
        let status = self.status(op);
        if let Some(bar) = self.ops.get(op).and_then(|p| p.bar.as_ref()) {
            bar.set_message(status);
        }
    }

    pub fn finish(&mut self) {
        self.plain_progress(true);
        for p in self.ops.values() {
            if let Some(bar) = &p.bar {
                bar.finish();
            }
        }
    }
}

/// Lines worth showing for one event: failures, skips and captured output.
fn step_lines(event: &RunEvent<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    match event {
        // Metadata is for `--json` and `dynhost show`, not the terminal.
        RunEvent::StepStarted { .. }
        | RunEvent::StepWaiting { .. }
        | RunEvent::StepReused { .. }
        | RunEvent::ItemMetadata { .. } => {}
        RunEvent::StepTolerated { step, .. } => {
            lines.push(format!("{step} tolerated: a collect runs without it"));
        }
        RunEvent::StepFinished { step, report, .. } => {
            captured_lines(&mut lines, step, report);
            if let Err(failure) = &report.outcome {
                lines.push(format!(
                    "{step} failed ({}): {}",
                    failure.kind, failure.message
                ));
            }
        }
        RunEvent::StepRetrying {
            step,
            report,
            attempt,
            delay,
            ..
        } => {
            captured_lines(&mut lines, step, report);
            if let Err(failure) = &report.outcome {
                lines.push(format!(
                    "{step} failed ({}), attempt {attempt}; retrying in {:.1}s: {}",
                    failure.kind,
                    delay.as_secs_f64(),
                    failure.message
                ));
            }
        }
        RunEvent::StepSkipped { step, reason, .. } => {
            lines.push(format!("{step} skipped: {reason}"))
        }
    }
    lines
}

fn captured_lines(
    lines: &mut Vec<String>,
    step: &StepName<'_>,
    report: &dynhost::runtime::StepReport,
) {
    for (stream, text) in [
        ("stdout", &report.stdout),
        ("stderr", &report.stderr),
        ("log", &report.log),
    ] {
        for line in text.lines() {
            lines.push(format!("{step} {stream}: {line}"));
        }
    }
}

fn print_event_json(event: &RunEvent<'_>) {
    let mut value = match event {
        RunEvent::StepStarted { step, op, attempt } => {
            json!({ "event": "step_started", "step": step, "op": op, "attempt": attempt })
        }
        RunEvent::StepWaiting { step, op, on } => {
            json!({ "event": "step_waiting", "step": step, "op": op, "waiting_for": on })
        }
        RunEvent::StepFinished { step, op, report } => {
            let mut value = step_json("step_finished", step, op, report);
            value["status"] = json!(if report.outcome.is_ok() {
                "succeeded"
            } else {
                "failed"
            });
            if report.no_value {
                value["no_value"] = json!(true);
            }
            if let Some(metadata) = &report.metadata {
                value["metadata"] = metadata_json(metadata);
            }
            if !report.outputs.is_empty() {
                let outputs: serde_json::Map<String, Value> = report
                    .outputs
                    .iter()
                    .map(|named| {
                        let mut output = json!({
                            "set": named.value.is_some(),
                            "bytes": named.value.as_ref().map(Vec::len),
                        });
                        if let Some(metadata) = &named.metadata {
                            output["metadata"] = metadata_json(metadata);
                        }
                        (named.name.clone(), output)
                    })
                    .collect();
                value["outputs"] = Value::Object(outputs);
            }
            value
        }
        RunEvent::ItemMetadata {
            step,
            op,
            output,
            key,
            metadata,
        } => {
            json!({ "event": "item_metadata", "step": step, "op": op, "output": output, "key": key, "metadata": metadata_json(metadata) })
        }
        RunEvent::StepRetrying {
            step,
            op,
            report,
            attempt,
            delay,
        } => {
            let mut value = step_json("step_retrying", step, op, report);
            value["attempt"] = json!(attempt);
            value["retry_in_secs"] = json!(delay.as_secs_f64());
            value
        }
        RunEvent::StepSkipped { step, op, reason } => {
            json!({ "event": "step_skipped", "step": step, "op": op, "reason": reason })
        }
        RunEvent::StepReused { step, op } => {
            json!({ "event": "step_reused", "step": step, "op": op })
        }
        RunEvent::StepTolerated {
            step,
            op,
            was_skipped,
        } => {
            json!({ "event": "step_tolerated", "step": step, "op": op, "was": if *was_skipped { "skipped" } else { "failed" } })
        }
    };
    value["ts"] = json!(now());
    println_json(&value);
}

/// A finished attempt: typed failure, accounting and captured output.
fn step_json(
    event: &str,
    step: &StepName<'_>,
    op: &str,
    report: &dynhost::runtime::StepReport,
) -> Value {
    let failure = match &report.outcome {
        Ok(_) => Value::Null,
        Err(f) => json!({ "kind": f.kind, "message": f.message }),
    };
    json!({
        "event": event, "step": step, "op": op, "failure": failure,
        "stats": {
            "wall_secs": report.stats.wall.as_secs_f64(),
            "peak_memory_bytes": report.stats.peak_memory_bytes,
            "emitted_items": report.stats.emitted_items,
            "emitted_bytes": report.stats.emitted_bytes,
            "output_bytes": report.stats.output_bytes,
            "fuel_used": report.stats.fuel_used,
            "http_requests": report.stats.http_requests,
            "http_sent_bytes": report.stats.http_sent_bytes,
            "http_received_bytes": report.stats.http_received_bytes,
            "instantiate_secs": f64::from(report.stats.instantiate_us) / 1e6,
            "teardown_secs": f64::from(report.stats.teardown_us) / 1e6,
        },
        "stdout": report.stdout, "stderr": report.stderr, "log": report.log,
    })
}

/// Metadata (a JSON array made by the runtime) as a JSON value.
fn metadata_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Seconds since the Unix epoch: every JSON event's `ts`.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn println_json(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not an error worth reporting.
    let _ = writeln!(out, "{value}");
}

/// A value as JSON when it is JSON, else as text.
fn value_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub fn print_run_json(report: &RunReport) -> anyhow::Result<()> {
    let outputs: Vec<Value> = report
        .outputs
        .iter()
        .map(|o| json!({ "op": o.op, "step": o.step, "keys": o.keys, "value": value_json(&o.value) }))
        .collect();
    let value = json!({
        "event": "run_finished",
        "ts": now(),
        "run_id": report.run_id,
        "job": report.job,
        "success": report.is_success(),
        "elapsed_secs": report.elapsed.as_secs_f64(),
        "host_peak_rss_bytes": dynhost::report::peak_rss_bytes(),
        "ops": serde_json::to_value(&report.ops)?,
        "outputs": outputs,
        "vanished": report.vanished,
        "empty_maps": report.empty_maps,
        "spilled_bytes": report.spilled_bytes,
    });
    println_json(&value);
    Ok(())
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println_json(&serde_json::to_value(value)?);
    Ok(())
}

/// How many values of one mapped last op the summary shows before eliding.
const SHOWN_OUTPUTS_PER_OP: usize = 20;

pub fn print_summary(report: &RunReport) {
    let mut err = std::io::stderr().lock();
    let status = if report.is_success() {
        "succeeded"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        err,
        "\njob `{}` {status}  (run {}, {} wall)",
        report.job,
        report.run_id,
        secs(report.elapsed)
    );
    let fuel = report.ops.iter().any(|op| op.fuel_used.is_some());
    let width = report
        .ops
        .iter()
        .map(|o| o.op.len())
        .max()
        .unwrap_or(2)
        .max(2);
    // `step time` is the op's steps' time summed (over workers), not wall
    // time; `tol.` counts failed or skipped steps a tolerant collect ran
    // without (they do not fail the run). 61 columns plus the op's name fit
    // 80 for names up to 19 characters; longer names are cut to fit.
    let width = width.min(TABLE_WIDTH - 61);
    let _ = writeln!(
        err,
        "{:width$}  {:>6} {:>6} {:>6} {:>4} {:>5} {:>9} {:>7} {:>8}{}",
        "op",
        "keys",
        "ok",
        "failed",
        "tol.",
        "skip",
        "step time",
        "mem MiB",
        "emitted",
        if fuel { "         fuel" } else { "" }
    );
    for op in &report.ops {
        let _ = writeln!(
            err,
            "{:width$}  {:>6} {:>6} {:>6} {:>4} {:>5} {:>9} {:>7.1} {:>8}{}",
            cut(&op.op, width),
            op.steps,
            op.succeeded,
            op.failed,
            op.tolerated,
            op.skipped + op.skipped_optional,
            secs(op.busy),
            op.peak_memory_bytes as f64 / f64::from(1u32 << 20),
            op.emitted_items,
            if fuel {
                format!(
                    " {:>12}",
                    op.fuel_used.map_or("-".to_owned(), |f| f.to_string())
                )
            } else {
                String::new()
            }
        );
    }
    for op in report.ops.iter().filter(|op| op.http_requests > 0) {
        let _ = writeln!(
            err,
            "  {}: {} HTTP request(s), {} bytes sent, {} received",
            op.op, op.http_requests, op.http_sent_bytes, op.http_received_bytes
        );
    }
    for op in report.ops.iter().filter(|op| !op.waited.is_zero()) {
        let _ = writeln!(
            err,
            "  {}: steps waited {} in total for `max_concurrent`/resource limits",
            op.op,
            secs(op.waited)
        );
    }
    for op in report.ops.iter().filter(|op| op.reused > 0) {
        let _ = writeln!(
            err,
            "  {}: {} step(s) reused from the stored run",
            op.op, op.reused
        );
    }
    for op in report.ops.iter().filter(|op| op.changed > 0) {
        let _ = writeln!(
            err,
            "  {}: {} step(s) ran again: the op's component or config changed since the stored run",
            op.op, op.changed
        );
    }
    for line in &report.empty_maps {
        let _ = writeln!(err, "  {line}: no keys, skipped");
    }
    for step in &report.vanished {
        let _ = writeln!(
            err,
            "  {step} vanished: its emitter no longer emits this key"
        );
    }
    for op in &report.ops {
        for f in &op.failures {
            let first = f.failure.message.lines().next().unwrap_or("");
            let tolerated = if f.tolerated { " [tolerated]" } else { "" };
            let _ = writeln!(
                err,
                "  {} failed ({}){tolerated}: {first}",
                f.step, f.failure.kind
            );
            if f.failure.kind == FailureKind::Trap {
                let _ = writeln!(
                    err,
                    "    (see the step's stderr above for the op's own message)"
                );
            }
        }
        for (step, reason) in &op.skips {
            let _ = writeln!(err, "  {step} skipped: {reason}");
        }
    }
    drop(err);
    let mut out = std::io::stdout().lock();
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &report.outputs {
        let n = shown.entry(&o.op).or_default();
        *n += 1;
        if *n <= SHOWN_OUTPUTS_PER_OP {
            let _ = writeln!(out, "{} = {}", o.step, value_json(&o.value));
        }
    }
    for (op, n) in shown {
        if n > SHOWN_OUTPUTS_PER_OP {
            let _ = writeln!(
                out,
                "... and {} more values of `{op}` (use --json for all)",
                n - SHOWN_OUTPUTS_PER_OP
            );
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The widest a table is printed.
const TABLE_WIDTH: usize = 80;

/// `name` cut to `width` characters, the cut marked with `…`.
fn cut(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_owned();
    }
    let kept: String = name.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}
