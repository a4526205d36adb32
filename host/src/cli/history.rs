//! `dynhost runs`, `show` and `logs`: reading the run store.

use dynhost::runtime::metadata;
use dynhost::store::{RunStore, SqliteStore, StepRow, unhex};
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
        "{:<id_width$}  {:<11}  {:<11} {:>5} {:>5} {:>5} {:>5} {:>6}",
        "RUN", "UTC", "STATUS", "OK", "FAIL", "TOL", "SKIP", "TIME"
    )?;
    for run in runs {
        // Running time, summed over resumes (not the time in between).
        let time = match (run.active_secs, run.finished_at) {
            (Some(active), Some(_)) => secs(active),
            (None, Some(end)) => secs(end - run.started_at),
            (_, None) => "-".to_owned(),
        };
        writeln!(
            out,
            "{:<id_width$}  {:<11}  {:<11} {:>5} {:>5} {:>5} {:>5} {:>6}",
            run.id,
            utc_minute(run.started_at),
            run.status,
            run.succeeded,
            run.failed,
            run.tolerated,
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

/// `11-30 11:02` (UTC) for seconds since the Unix epoch.
fn utc_minute(epoch_secs: f64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(epoch_secs.max(0.0));
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(5..16).unwrap_or(&text).replace('T', " ")
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

/// A step by its name as [`step_name`] writes it (`op`, `op[key]`,
/// `op[outer][inner]`), read by its primary key.
fn find_step(store: &SqliteStore, run: &str, step: &str) -> anyhow::Result<StepRow> {
    // A selection of one key path is one step's name (keys hold no
    // brackets or commas); anything else names no step.
    let (op, keys) = match dynhost::resume::parse_selection(step) {
        Ok(s) if s.keys.len() <= 1 => (s.op, s.keys.into_iter().next().unwrap_or_default()),
        _ => (String::new(), Vec::new()),
    };
    store
        .step(run, &op, &keys)?
        .filter(|row| step_name(row) == step)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "run `{run}` has no step `{step}`; `dynhost show {run}` lists its steps"
            )
        })
}

/// What `dynhost show` was asked for.
pub struct ShowArgs<'a> {
    /// The run as the user named it.
    pub run: &'a str,
    /// An op (`op`) or one step (`op[key]`).
    pub target: Option<&'a str>,
    /// List the steps with this status.
    pub status: Option<&'a str>,
    /// Do not cut long values.
    pub full: bool,
    /// Write one value's bytes to stdout, nothing else.
    pub raw: bool,
}

/// `dynhost show RUN [op | 'op[key]']`: a run per op; an op's values; one
/// step with its inputs and output (also `op` for an op outside any map).
pub fn show(store: &SqliteStore, args: &ShowArgs<'_>) -> anyhow::Result<ExitCode> {
    let header = store.run(args.run)?;
    match args.target {
        Some(step) if step.contains('[') => show_step(store, &header.id, step, args),
        Some(op) => show_op(store, &header.id, op, args),
        None if args.raw => {
            anyhow::bail!("`--raw` writes one value: name an op or a step (`op[key]`)")
        }
        None => show_run(store, &header, args.status),
    }
}

fn show_run(
    store: &SqliteStore,
    header: &dynhost::store::RunSummary,
    status: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some(status) = status
        && !["succeeded", "failed", "skipped"].contains(&status)
    {
        anyhow::bail!("`--status {status}`: use succeeded, failed or skipped");
    }
    let mut out = std::io::stdout().lock();
    let run = header.id.as_str();
    writeln!(
        out,
        "run {} of `{}` ({}): {}",
        header.id, header.job, header.job_file, header.status
    )?;
    for line in descriptions(store, run)? {
        writeln!(out, "{line}")?;
    }
    if let Some(config) = header
        .config
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c).ok())
    {
        for (op, value) in config
            .iter()
            .filter(|(_, v)| v.as_object().is_some_and(|o| !o.is_empty()))
        {
            writeln!(out, "config {op}: {value}")?;
        }
    }
    // Counted as in the run's summary: a failed or skipped step a tolerant
    // collect ran without is `tolerated`, not failed or skipped. From the
    // kept counts, not the steps: a million-step run shows at once.
    let counted = store.step_counts(run)?;
    let mut per_op: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for count in &counted {
        let counts = per_op.entry(&count.op).or_default();
        match (count.status.as_str(), count.tolerated) {
            ("succeeded", _) => counts[0] += count.n,
            (_, true) => counts[2] += count.n,
            ("failed", false) => counts[1] += count.n,
            _ => counts[3] += count.n,
        }
    }
    writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>9} {:>8}",
        "op", "succeeded", "failed", "tolerated", "skipped"
    )?;
    for (op, [ok, failed, tolerated, skipped]) in &per_op {
        writeln!(
            out,
            "{op:<24} {ok:>9} {failed:>7} {tolerated:>9} {skipped:>8}"
        )?;
    }
    let listed = |row: &&StepRow| match status {
        Some(status) => row.status == status,
        None => row.status != "succeeded",
    };
    // Only listing successes reads every step.
    let rows = match status {
        Some("succeeded") => store.steps(run)?,
        _ => store.unsuccessful_steps(run)?,
    };
    for row in rows.iter().filter(listed) {
        let detail = match (&row.failure_kind, row.output_bytes) {
            (Some(kind), _) => {
                let message = row
                    .failure_message
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                format!("({kind}): {message}")
            }
            (None, Some(bytes)) => format!("({})", super::value::size(bytes as usize)),
            (None, None) => String::new(),
        };
        let tolerated = if row.tolerated { " [tolerated]" } else { "" };
        writeln!(
            out,
            "  {} {}{tolerated} {detail}",
            step_name(row),
            row.status
        )?;
    }
    writeln!(
        out,
        "`dynhost show RUN OP` prints an op's values, `show RUN 'OP[KEY]'` one step;\n`--status succeeded|failed|skipped` lists steps (RUN: an id prefix or `latest`)"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `about OP: ...` and `about OP.OUTPUT: ...` for every op and dynamic output
/// with a description, from the plan the run ran (not today's job file).
fn descriptions(store: &SqliteStore, run: &str) -> anyhow::Result<Vec<String>> {
    let Some(plan) = store
        .locked_plan(run)?
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for op in plan["plan"]["ops"].as_array().into_iter().flatten() {
        let name = op["name"].as_str().unwrap_or("?");
        if let Some(about) = op["description"].as_str() {
            lines.push(format!("about {name}: {about}"));
        }
        let outputs = op["dynamic_outputs"].as_array().into_iter().flatten();
        let about = op["output_descriptions"].as_array().into_iter().flatten();
        for (output, about) in outputs.zip(about) {
            if let (Some(output), Some(about)) = (output.as_str(), about.as_str()) {
                lines.push(format!("about {name}.{output}: {about}"));
            }
        }
    }
    Ok(lines)
}

/// An op's values, in emission order for a mapped op.
fn show_op(
    store: &SqliteStore,
    run: &str,
    op: &str,
    args: &ShowArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let steps = store.op_values(run, op)?;
    if steps.is_empty() {
        let mut ops: Vec<String> = store.step_counts(run)?.into_iter().map(|c| c.op).collect();
        ops.sort();
        ops.dedup();
        anyhow::bail!(
            "run `{run}` has no steps of op `{op}`; its ops: {}",
            ops.join(", ")
        );
    }
    // An op outside any map is one step: show it whole (inputs, output,
    // metadata, logs), as `op[key]` does for a mapped one.
    if let [one] = steps.as_slice()
        && one.keys.is_empty()
        && !args.raw
        && args.status.is_none()
    {
        return show_step(store, run, op, args);
    }
    if args.raw {
        return match steps.as_slice() {
            [one] => write_raw(one.output.as_deref(), &format!("`{op}`")),
            _ => anyhow::bail!(
                "`--raw` writes one value and `{op}` has {} steps: name one, e.g. `{op}[{}]`",
                steps.len(),
                steps[0].keys.join("][")
            ),
        };
    }
    let mut out = std::io::stdout().lock();
    for step in steps
        .iter()
        .filter(|s| args.status.is_none_or(|st| s.status == st))
    {
        let mut name = op.to_owned();
        for key in &step.keys {
            name.push_str(&format!("[{key}]"));
        }
        match (&step.output, &step.failure) {
            (Some(value), _) => {
                let lines = super::value::render(value, args.full);
                if let [line] = lines.as_slice() {
                    writeln!(out, "{name} = {line}")?;
                } else {
                    writeln!(out, "{name} =")?;
                    for line in lines {
                        writeln!(out, "  {line}")?;
                    }
                }
            }
            (None, Some(failure)) => writeln!(out, "{name} {} ({failure})", step.status)?,
            (None, None) => writeln!(out, "{name} {}", step.status)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_raw(value: Option<&[u8]>, what: &str) -> anyhow::Result<ExitCode> {
    let Some(bytes) = value else {
        anyhow::bail!("{what} has no value (it did not succeed)");
    };
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Items with metadata listed by `show RUN STEP` without `--full`.
const ITEMS_SHOWN: usize = 20;

/// One step: status, inputs (values), output (value), metadata, accounting, logs.
fn show_step(
    store: &SqliteStore,
    run: &str,
    step: &str,
    args: &ShowArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let row = find_step(store, run, step)?;
    let output = store.step_output(run, &row.op, &row.keys)?;
    if args.raw {
        return write_raw(output.as_deref(), &format!("step `{step}`"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "step {step} of run {run}: {}", row.status)?;
    writeln!(out, "  attempts        {}", row.attempts)?;
    let inputs: Vec<serde_json::Value> = row
        .inputs
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    for input in inputs {
        let name = input["name"].as_str().unwrap_or("?");
        let from = input["from"]
            .as_str()
            .map_or(String::new(), |f| format!(" ({f})"));
        if input["kind"] == "collected" {
            writeln!(
                out,
                "  input {name}{from}: {} items, {} failed",
                input["items"], input["failed"]
            )?;
            continue;
        }
        let value = match (input["hex"].as_str(), input["sha256"].as_str()) {
            (Some(hex), _) => unhex(hex).map(std::sync::Arc::from),
            (None, Some(hash)) => store.value_by_hash(hash)?,
            _ => None,
        };
        match value {
            Some(bytes) => {
                print_value(&mut out, &format!("input {name}{from}"), &bytes, args.full)?
            }
            None => writeln!(
                out,
                "  input {name}{from}: {} bytes, sha256 {}",
                input["bytes"],
                input["sha256"].as_str().unwrap_or("?")
            )?,
        }
    }
    match &output {
        _ if row.no_value => {
            writeln!(out, "  output          no value (the op's optional result)")?
        }
        Some(bytes) => print_value(&mut out, "output", bytes, args.full)?,
        None => writeln!(out, "  output          none")?,
    }
    for line in row
        .metadata
        .as_deref()
        .map(metadata::lines)
        .unwrap_or_default()
    {
        writeln!(out, "  metadata        {line}")?;
    }
    for named in store.step_outputs(run, &row.op, &row.keys)? {
        let label = format!("output {}", named.name);
        match &named.value {
            Some(bytes) => print_value(&mut out, &label, bytes, args.full)?,
            None => writeln!(out, "  {label}: not set")?,
        }
        for line in named
            .metadata
            .as_deref()
            .map(metadata::lines)
            .unwrap_or_default()
        {
            writeln!(out, "  metadata {}: {line}", named.name)?;
        }
    }
    let items = store.item_metadata(run, &row.op, &row.keys)?;
    let shown = if args.full { items.len() } else { ITEMS_SHOWN };
    for (output, key, text) in items.iter().take(shown) {
        let lines = metadata::lines(text).join(", ");
        writeln!(out, "  item {output}[{key}] metadata: {lines}")?;
    }
    if items.len() > shown {
        writeln!(
            out,
            "  ... {} more items with metadata (--full shows all)",
            items.len() - shown
        )?;
    }
    writeln!(out, "  wall time       {:.3}s", row.wall_secs)?;
    writeln!(out, "  peak memory     {} bytes", row.peak_memory_bytes)?;
    writeln!(
        out,
        "  emitted         {} items, {} bytes",
        row.emitted_items, row.emitted_bytes
    )?;
    if let Some(fuel) = row.fuel_used {
        writeln!(out, "  fuel used       {fuel}")?;
    }
    if let Some(services) = row.services.as_deref().map(dynhost::store::services_line) {
        writeln!(out, "  services        {services}")?;
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
    Ok(ExitCode::SUCCESS)
}

/// `  label (size): value` on one line when it fits, else the value's
/// lines indented below the label.
fn print_value(out: &mut impl Write, label: &str, bytes: &[u8], full: bool) -> std::io::Result<()> {
    let lines = super::value::render(bytes, full);
    let size = super::value::size(bytes.len());
    match lines.as_slice() {
        [line] if line.chars().count() <= 60 => writeln!(out, "  {label} ({size}): {line}"),
        _ => {
            writeln!(out, "  {label} ({size}):")?;
            for line in &lines {
                writeln!(out, "    {line}")?;
            }
            Ok(())
        }
    }
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
