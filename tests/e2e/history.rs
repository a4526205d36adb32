//! Issue 11: one run history, found from anywhere; runs named by prefix or
//! `latest`; `runs` readable in 80 columns and quiet on a closed pipe.

use crate::support::{CliOutput, TestJob, command, output};
use std::path::Path;

const JOB: &str = r#"name = "history"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 3
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
"#;

/// `dynhost args...` in `cwd` with `home` as the user's data directory.
fn with_home(home: &Path, cwd: &Path, args: &[&str]) -> CliOutput {
    let mut cmd = command(cwd, args);
    cmd.env("XDG_DATA_HOME", home);
    output(cmd)
}

fn first_run_id(runs: &CliOutput) -> String {
    runs.stdout
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run listed:\n{}", runs.stdout))
        .to_owned()
}

#[test]
fn every_command_finds_every_run_from_any_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let job = TestJob::without_store(JOB);
    with_home(home.path(), job.dir(), &["run", "job.toml"]).assert_code(0);
    assert!(
        home.path().join("dynhost/runs.db").is_file(),
        "a job with no .dynhost/ above it records in the user store"
    );

    // From an unrelated directory: listed with its job file, and found by
    // a prefix of its id and by `latest`.
    let runs = with_home(home.path(), elsewhere.path(), &["runs"]);
    runs.assert_code(0);
    let job_file = job.dir().join("job.toml");
    assert!(
        runs.stdout.contains("history: ") && runs.stdout.contains("job.toml"),
        "{}",
        runs.stdout
    );
    assert!(runs.stdout.contains("succeeded"), "{}", runs.stdout);
    let id = first_run_id(&runs);
    let prefix = &id[..id.len() - 3];
    for name in [prefix, "latest", &format!("latest:{}", job_file.display())] {
        let show = with_home(home.path(), elsewhere.path(), &["show", name]);
        show.assert_code(0);
        assert!(show.stdout.contains(&id), "show {name}: {}", show.stdout);
    }
    with_home(home.path(), elsewhere.path(), &["resume", prefix]).assert_code(0);
    let logs = with_home(
        home.path(),
        elsewhere.path(),
        &["logs", "latest", "work[k1]"],
    );
    logs.assert_code(0);

    // A prefix of two runs is refused, naming them.
    with_home(home.path(), job.dir(), &["run", "job.toml"]).assert_code(0);
    let ambiguous = with_home(home.path(), elsewhere.path(), &["show", "1"]);
    ambiguous.assert_code(2);
    assert!(
        ambiguous.stderr.contains("2 run ids") && ambiguous.stderr.contains(&id),
        "{}",
        ambiguous.stderr
    );
    let unknown = with_home(home.path(), elsewhere.path(), &["show", "nope"]);
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("no run `nope`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_project_store_is_found_from_below_and_reading_never_creates_a_store() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join(".dynhost")).unwrap();
    std::fs::create_dir_all(project.path().join("jobs")).unwrap();
    std::fs::create_dir_all(project.path().join("data/deep")).unwrap();
    std::fs::write(
        project.path().join("jobs/job.toml"),
        JOB.replace("{probe}", &crate::support::probe()),
    )
    .unwrap();
    with_home(home.path(), project.path(), &["run", "jobs/job.toml"]).assert_code(0);
    assert!(project.path().join(".dynhost/runs.db").is_file());
    let runs = with_home(home.path(), &project.path().join("data/deep"), &["runs"]);
    runs.assert_code(0);
    assert!(runs.stdout.contains("history: "), "{}", runs.stdout);

    // Nothing recorded anywhere: reading says so and creates nothing.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let runs = with_home(empty.path(), nowhere.path(), &["runs"]);
    runs.assert_code(0);
    assert!(
        runs.stderr.contains("no runs recorded yet"),
        "{}",
        runs.stderr
    );
    for args in [
        &["show", "latest"][..],
        &["resume", "latest"],
        &["logs", "x", "y[z]"],
    ] {
        let out = with_home(empty.path(), nowhere.path(), args);
        out.assert_code(2);
        assert!(
            out.stderr.contains("no runs recorded"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "a read-only command created a store"
    );
}

/// Exit status of `dynhost args` writing into a pipe whose reader has
/// already gone (stderr too when `merged`).
fn into_closed_pipe(dir: &Path, args: &str, merged: bool) -> (i32, String) {
    let redirect = if merged { "2>&1" } else { "2>/dev/null" };
    let script = format!(
        "{} {args} {redirect} | true; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_dynhost")
    );
    // dynhost's own environment (compile cache, user store), under bash.
    let dynhost = command(dir, &[]);
    let mut bash = std::process::Command::new("bash");
    bash.args(["-c", &script]).current_dir(dir);
    for (key, value) in dynhost.get_envs() {
        match value {
            Some(v) => bash.env(key, v),
            None => bash.env_remove(key),
        };
    }
    let out = bash.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (text.parse().unwrap_or(-1), text)
}

#[test]
fn runs_fit_80_columns_and_printing_commands_survive_a_closed_pipe() {
    let job = TestJob::new(JOB);
    job.run(&[]).assert_code(0);
    job.run(&[]).assert_code(0);
    let runs = crate::support::dynhost(job.dir(), &["runs"]);
    runs.assert_code(0);
    assert_eq!(runs.stdout.lines().count(), 5, "{}", runs.stdout);
    for line in runs.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    // The run's summary table too, even with a long op name.
    let long =
        TestJob::new(&JOB.replace("[ops.work]", "[ops.work_on_every_file_of_the_directory]"));
    let summary = crate::support::dynhost(long.dir(), &["run", "--quiet", "job.toml"]);
    summary.assert_code(0);
    assert!(
        summary.stderr.contains("work_on_every_file…"),
        "{}",
        summary.stderr
    );
    for line in summary.stderr.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    for args in [
        "runs",
        "show latest",
        "show latest 'work[k1]'",
        "logs latest 'work[k1]'",
    ] {
        for merged in [false, true] {
            let (code, text) = into_closed_pipe(job.dir(), args, merged);
            assert_eq!(
                code, 0,
                "`dynhost {args}` into a closed pipe (merged: {merged}): {text}"
            );
        }
    }
}

const TWELVE: &str = r#"name = "twelve"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 12
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { k5 = "return_kib:8" }
"#;

/// Where each `work[kN]` first appears in `text`, as the list of N in order.
fn order_of_keys(text: &str) -> Vec<u32> {
    let mut order = Vec::new();
    for piece in text.split("work[k").skip(1) {
        let n: u32 = piece
            .split(']')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        if !order.contains(&n) {
            order.push(n);
        }
    }
    order
}

#[test]
fn stored_values_can_be_read_back_in_emission_order() {
    let job = TestJob::new(TWELVE);
    let run = job.run(&[]);
    run.assert_code(0);
    let emission: Vec<u32> = (0..12).collect();
    // The last op's values on stdout come out in emission order (k2 before k10).
    let outputs: Vec<String> = run.finished()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order_of_keys(&outputs.join(" ")), emission, "{outputs:?}");
    let summary = crate::support::dynhost(job.dir(), &["run", "job.toml"]);
    assert_eq!(
        order_of_keys(&summary.stdout),
        emission,
        "{}",
        summary.stdout
    );

    // `show RUN op`: every value, in emission order.
    let op = crate::support::dynhost(job.dir(), &["show", "latest", "work"]);
    op.assert_code(0);
    assert_eq!(order_of_keys(&op.stdout), emission, "{}", op.stdout);
    assert!(
        op.stdout.contains("work[k2] = {\"counter\""),
        "{}",
        op.stdout
    );

    // One step: its input's value and where it came from, its output pretty-printed.
    let step = crate::support::dynhost(job.dir(), &["show", "latest", "work[k3]"]);
    step.assert_code(0);
    assert!(
        step.stdout.contains("input v (item of `emit.") && step.stdout.contains("): 3"),
        "{}",
        step.stdout
    );
    assert!(
        step.stdout.contains("  output (") && step.stdout.contains("\"keys\":[\"k3\"]"),
        "{}",
        step.stdout
    );

    // `--raw`: exactly the stored bytes.
    let raw = crate::support::dynhost(job.dir(), &["show", "latest", "work[k3]", "--raw"]);
    raw.assert_code(0);
    let value: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(value["keys"], serde_json::json!(["k3"]), "{}", raw.stdout);
    let many = crate::support::dynhost(job.dir(), &["show", "latest", "work", "--raw"]);
    many.assert_code(2);
    assert!(many.stderr.contains("has 12 steps"), "{}", many.stderr);

    // A long value is cut with a note, whole with --full.
    let long = crate::support::dynhost(job.dir(), &["show", "latest", "work[k5]"]);
    assert!(
        long.stdout.contains("… cut: 8.0 KiB in all"),
        "{}",
        long.stdout
    );
    let full = crate::support::dynhost(job.dir(), &["show", "latest", "work[k5]", "--full"]);
    assert!(
        !full.stdout.contains("… cut") && full.stdout.contains("k5k5k5"),
        "{}",
        full.stdout
    );

    // `--status succeeded` lists succeeded steps; an unknown op names the ops.
    let ok = crate::support::dynhost(job.dir(), &["show", "latest", "--status", "succeeded"]);
    assert!(ok.stdout.contains("work[k11] succeeded"), "{}", ok.stdout);
    let nope = crate::support::dynhost(job.dir(), &["show", "latest", "nope"]);
    nope.assert_code(2);
    assert!(
        nope.stderr.contains("its ops: emit, work"),
        "{}",
        nope.stderr
    );
}

/// Issue 11: tolerated failures are counted the same way in the summary,
/// `--json`, `show` and `runs`: not as failures.
#[test]
fn tolerated_failures_are_counted_apart_everywhere() {
    let job = TestJob::new(
        r#"name = "tolerant"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 4
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { k2 = "fail" }
[ops.all]
component = "{probe}"
inputs.vs = { collect = "work", max_failures = 1 }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(0);
    assert_eq!(out.op_summary("work")["tolerated"], 1);
    assert_eq!(out.op_summary("work")["failed"], 0);
    assert_eq!(out.steps_with("step_tolerated"), ["work[k2]"]);
    // Progress counts it the same way once the collect tolerates it.
    let plain = crate::support::dynhost(job.dir(), &["run", "job.toml", "--progress-secs", "0.1"]);
    let last = plain
        .stderr
        .lines()
        .rfind(|l| l.starts_with("progress: work: "))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        last, "progress: work: 4 of 4 keys, 0 failed, 0 skipped, 1 tolerated",
        "{}",
        plain.stderr
    );
    let summary = crate::support::dynhost(job.dir(), &["run", "job.toml"]);
    let row: Vec<&str> = summary
        .stderr
        .lines()
        .find(|l| l.starts_with("work "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..6],
        ["work", "4", "3", "0", "1", "0"],
        "{}",
        summary.stderr
    );
    let show = crate::support::dynhost(job.dir(), &["show", "latest"]);
    assert!(
        show.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["work", "3", "0", "1", "0"]),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("work[k2] failed [tolerated]"),
        "{}",
        show.stdout
    );
    let runs = crate::support::dynhost(job.dir(), &["runs"]);
    let row: Vec<&str> = runs
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    // RUN, date, time, STATUS, OK, FAIL, TOL, SKIP, TIME
    assert_eq!(
        &row[3..8],
        ["succeeded", "5", "0", "1", "0"],
        "{}",
        runs.stdout
    );
}

/// Issue 13/14: each run stores the plan it ran, with every component named
/// by its SHA-256, so what ran can be told apart from today's job file.
#[test]
fn a_run_stores_its_locked_plan_with_components_by_digest() {
    use sha2::Digest;
    let job = crate::support::TestJob::new(
        r#"name = "locked"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 2
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
"#,
    );
    job.run(&[]).assert_code(0);
    let conn = rusqlite::Connection::open(job.dir().join(".dynhost/runs.db")).unwrap();
    let text: String = conn
        .query_row("SELECT plan FROM runs", [], |r| r.get(0))
        .unwrap();
    let locked: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(locked["format"], 1);
    let bytes = std::fs::read(crate::support::guest("probe")).unwrap();
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    let components = locked["components"].as_array().unwrap();
    let ops: Vec<&str> = components
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["emit", "work"]);
    for component in components {
        assert_eq!(component["digest"], digest.as_str(), "{component}");
    }
    assert_eq!(locked["plan"]["ops"][1]["name"], "work");
    assert_eq!(locked["plan"]["ops"][1]["scope"][0]["output"], "result");
}

/// `show` prints a step's inputs whole whatever their size: a small one is
/// kept in the step's summary, a larger one (over 64 bytes) is found by its
/// hash among the stored values.
#[test]
fn show_prints_small_and_large_inputs_whole() {
    let long = "x".repeat(200);
    let job = TestJob::new(&format!(
        "name = \"sizes\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\n\
         config.emit = [{{ key = \"small\", value = 7 }}, {{ key = \"large\", value = \"{long}\" }}]\n\
         [ops.work]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\n"
    ));
    job.run(&[]).assert_code(0);
    let small = crate::support::dynhost(job.dir(), &["show", "latest", "work[small]"]);
    small.assert_code(0);
    assert!(small.stdout.contains("): 7"), "{}", small.stdout);
    let large = crate::support::dynhost(job.dir(), &["show", "latest", "work[large]"]);
    large.assert_code(0);
    assert!(large.stdout.contains(&long), "{}", large.stdout);
    assert!(!large.stdout.contains("sha256 ?"), "{}", large.stdout);
}

/// Issue 15, goal 4: a new run's plain successes are recorded packed (no
/// `steps` row each while it runs); the first `show` writes them out as
/// rows, and every value reads back, in emission order.
#[test]
fn packed_steps_of_a_run_read_back_whole_through_show() {
    let trivial = crate::support::guest("trivial").display().to_string();
    let job = TestJob::new(&format!(
        r#"name = "packed"
[defaults]
max_emits = 300
[ops.emit]
component = "{trivial}"
dynamic = true
config = {{ emit = 300 }}
[ops.work]
component = "{trivial}"
inputs.v = {{ map = "emit" }}
"#
    ));
    job.run(&[]).assert_code(0);
    let db = job.dir().join(".dynhost/runs.db");
    let count = |sql: &str| -> i64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    assert!(
        count("SELECT count(*) FROM step_packs") >= 3,
        "300 plain steps recorded in packs"
    );
    let rows_before = count("SELECT count(*) FROM steps WHERE op = 'work'");
    assert!(rows_before < 300, "{rows_before} rows before any read");
    let packs = count("SELECT count(*) FROM step_packs");

    // The run's summary comes from the kept counts: no pack written out.
    let summary = crate::support::dynhost(job.dir(), &["show", "latest"]);
    summary.assert_code(0);
    let work = summary.stdout.lines().find(|l| l.starts_with("work "));
    let counts: Vec<&str> = work.unwrap_or_default().split_whitespace().collect();
    assert_eq!(counts, ["work", "300", "0", "0", "0"], "{}", summary.stdout);
    assert_eq!(count("SELECT count(*) FROM step_packs"), packs);
    // One step (and its logs) writes out its own pack at most.
    let one = crate::support::dynhost(job.dir(), &["show", "latest", "work[k150]"]);
    one.assert_code(0);
    assert!(
        one.stdout.contains("step work[k150] of run"),
        "{}",
        one.stdout
    );
    assert!(one.stdout.contains("150"), "{}", one.stdout);
    let logs = crate::support::dynhost(job.dir(), &["logs", "latest", "work[k150]"]);
    logs.assert_code(0);
    let missing = crate::support::dynhost(job.dir(), &["show", "latest", "work[k300]"]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("has no step `work[k300]`"),
        "{}",
        missing.stderr
    );
    assert!(count("SELECT count(*) FROM step_packs") >= packs - 1);

    let show = crate::support::dynhost(job.dir(), &["show", "latest", "work"]);
    show.assert_code(0);
    assert_eq!(show.stderr, "", "read as it is: nothing to say");
    assert_eq!(
        order_of_keys(&show.stdout),
        (0..300).collect::<Vec<u32>>(),
        "{}",
        show.stdout
    );
    // The trivial op returns its input: the emitter's value `i` for `k{i}`.
    assert!(show.stdout.contains("work[k299] = 299"), "{}", show.stdout);
    // An op's values and every step's listing are read from the packs.
    let listed = crate::support::dynhost(job.dir(), &["show", "latest", "--status", "succeeded"]);
    listed.assert_code(0);
    assert!(
        listed.stdout.contains("work[k299] succeeded"),
        "{}",
        listed.stdout
    );
    assert!(count("SELECT count(*) FROM step_packs") >= packs - 1);
    let runs = crate::support::dynhost(job.dir(), &["runs"]);
    assert!(runs.stdout.contains(" 301 "), "{}", runs.stdout);
}

/// A large new run (here 100,000 keys) is read from its packs as they
/// are: an op's values and the listing of every step, nothing written
/// out and nothing to warn of; the same once it is written out.
#[test]
fn a_large_runs_values_and_steps_read_packed() {
    let trivial = crate::support::guest("trivial").display().to_string();
    let job = TestJob::new(&format!(
        r#"name = "large"
[defaults]
max_emits = 100000
[ops.emit]
component = "{trivial}"
dynamic = true
config = {{ emit = 100000 }}
[ops.work]
component = "{trivial}"
inputs.v = {{ map = "emit" }}
"#
    ));
    job.run(&[]).assert_code(0);
    let db = job.dir().join(".dynhost/runs.db");
    let packs = || -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM step_packs", [], |r| r.get(0))
            .unwrap()
    };
    let before = packs();
    assert!(before > 700, "{before} packs");
    let values = crate::support::dynhost(job.dir(), &["show", "latest", "work"]);
    values.assert_code(0);
    assert_eq!(values.stderr, "");
    assert_eq!(values.stdout.lines().count(), 100_000);
    assert!(values.stdout.contains("work[k99999] = 99999"));
    let listed = crate::support::dynhost(job.dir(), &["show", "latest", "--status", "succeeded"]);
    listed.assert_code(0);
    assert_eq!(listed.stderr, "");
    assert!(
        listed.stdout.contains("work[k99999] succeeded"),
        "{}",
        &listed.stdout[..500]
    );
    assert_eq!(packs(), before, "nothing written out");
    // Written out (as a tool reading the file with SQL would), both read the same.
    dynhost::store::SqliteStore::open(&db)
        .unwrap()
        .unpack_all()
        .unwrap();
    assert_eq!(packs(), 0);
    let values_after = crate::support::dynhost(job.dir(), &["show", "latest", "work"]);
    assert_eq!(values_after.stdout, values.stdout);
    let listed_after =
        crate::support::dynhost(job.dir(), &["show", "latest", "--status", "succeeded"]);
    assert_eq!(listed_after.stdout, listed.stdout);
}
