//! `dynhost runs`, `show` and `logs`: reading the run store.

use dynhost::store::{RunStore, SqliteStore, StepRow};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// Width of every table `runs` prints (and of its job lines).
const WIDTH: usize = 80;

/// `dynhost runs`: one row per run, newest first, with the job's name and
/// file on an indented line below it (runs of one job over different data
/// are told apart by the file), all within 80 columns.
pub fn runs(store: &SqliteStore) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let runs = store.runs()?;
    let id_width = runs.iter().map(|r| r.id.len()).max().unwrap_or(3).max(3);
    writeln!(
        out,
        "{:<id_width$}  {:<16}  {:<11} {:>5} {:>5} {:>5} {:>7}",
        "RUN", "STARTED (UTC)", "STATUS", "OK", "FAIL", "SKIP", "TIME"
    )?;
    for run in runs {
        let time = run
            .finished_at
            .map_or("-".to_owned(), |end| secs(end - run.started_at));
        writeln!(
            out,
            "{:<id_width$}  {:<16}  {:<11} {:>5} {:>5} {:>5} {:>7}",
            run.id,
            utc_minute(run.started_at),
            run.status,
            run.succeeded,
            run.failed,
            run.skipped,
            time
        )?;
        writeln!(
            out,
            "{}",
            fit(&format!("  {}: {}", run.job, run.job_file), WIDTH)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-30 11:02` for seconds since the Unix epoch.
fn utc_minute(epoch_secs: f64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(epoch_secs.max(0.0));
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(..16).unwrap_or(&text).replace('T', " ")
}

fn secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// `text` cut to `width` characters, keeping its end (the file name) and
/// marking the cut with `…`.
fn fit(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_owned();
    }
    let keep = width.saturating_sub(3);
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("  …{tail}")
}

fn step_name(row: &StepRow) -> String {
    let mut name = row.op.clone();
    for key in &row.keys {
        name.push_str(&format!("[{key}]"));
    }
    name
}

fn find_step(store: &SqliteStore, run: &str, step: &str) -> anyhow::Result<StepRow> {
    store
        .steps(run)?
        .into_iter()
        .find(|row| step_name(row) == step)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "run `{run}` has no step `{step}`; `dynhost show {run}` lists its steps"
            )
        })
}

pub fn show(store: &SqliteStore, run: &str, step: Option<&str>) -> anyhow::Result<ExitCode> {
    let header = store.run(run)?;
    let run = header.id.as_str();
    let mut out = std::io::stdout().lock();
    if let Some(step) = step {
        let row = find_step(store, run, step)?;
        writeln!(out, "step {step} of run {run}: {}", row.status)?;
        writeln!(out, "  attempts        {}", row.attempts)?;
        let inputs: Vec<serde_json::Value> = row
            .inputs
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        for input in inputs {
            let detail = match input["kind"].as_str() {
                Some("collected") => {
                    format!("{} items, {} failed", input["items"], input["failed"])
                }
                _ => format!(
                    "{} bytes, sha256 {}",
                    input["bytes"],
                    input["sha256"].as_str().unwrap_or("?")
                ),
            };
            writeln!(
                out,
                "  input {:<9} {detail}",
                input["name"].as_str().unwrap_or("?")
            )?;
        }
        writeln!(out, "  wall time       {:.3}s", row.wall_secs)?;
        writeln!(out, "  peak memory     {} bytes", row.peak_memory_bytes)?;
        writeln!(
            out,
            "  emitted         {} items, {} bytes",
            row.emitted_items, row.emitted_bytes
        )?;
        writeln!(
            out,
            "  output          {}",
            row.output_bytes
                .map_or("none".to_owned(), |n| format!("{n} bytes"))
        )?;
        if let Some(fuel) = row.fuel_used {
            writeln!(out, "  fuel used       {fuel}")?;
        }
        if let (Some(kind), Some(message)) = (&row.failure_kind, &row.failure_message) {
            writeln!(out, "  failure         {kind}: {message}")?;
        }
        for (stream, text) in [
            ("stdout", &row.stdout),
            ("stderr", &row.stderr),
            ("log", &row.log),
        ] {
            for line in text.lines() {
                writeln!(out, "  {stream}: {line}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "run {} of `{}` ({}): {}",
        header.id, header.job, header.job_file, header.status
    )?;
    let rows = store.steps(run)?;
    let mut per_op: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for row in &rows {
        let counts = per_op.entry(&row.op).or_default();
        match row.status.as_str() {
            "succeeded" => counts[0] += 1,
            "failed" => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>8}",
        "op", "succeeded", "failed", "skipped"
    )?;
    for (op, [ok, failed, skipped]) in &per_op {
        writeln!(out, "{op:<24} {ok:>9} {failed:>7} {skipped:>8}")?;
    }
    for row in rows.iter().filter(|r| r.status != "succeeded") {
        let kind = row.failure_kind.as_deref().unwrap_or("?");
        let message = row
            .failure_message
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        writeln!(
            out,
            "  {} {} ({kind}): {message}",
            step_name(row),
            row.status
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logs(store: &SqliteStore, run: &str, step: &str) -> anyhow::Result<ExitCode> {
    let header = store.run(run)?;
    let row = find_step(store, &header.id, step)?;
    let mut out = std::io::stdout().lock();
    for (stream, text) in [
        ("stdout", &row.stdout),
        ("stderr", &row.stderr),
        ("log", &row.log),
    ] {
        if !text.is_empty() {
            writeln!(out, "--- {stream}")?;
            write!(out, "{text}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
