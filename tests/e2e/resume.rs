//! The run store and resume (issue 5): every run recorded, resumed per key
//! with nothing lost and nothing run twice.

use crate::support::{TestJob, dynhost};
use serde_json::Value;
use std::time::{Duration, Instant};

fn job_text(work_config: &str, keys: usize, sleep_ms: u64) -> String {
    let items: Vec<String> = (0..keys)
        .map(|i| format!("{{ key = \"k{i}\", value = {sleep_ms} }}"))
        .collect();
    format!(
        r#"name = "resumable"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{}]
[ops.work]
component = "{{probe}}"
inputs.ms = {{ map = "emit" }}
config = {{ sleep_ms_input = "ms"{work_config} }}
[ops.next]
component = "{{probe}}"
inputs.w = {{ map = "work" }}
[ops.all]
component = "{{probe}}"
inputs.ns = {{ collect = "next" }}
"#,
        items.join(", ")
    )
}

fn run_id(out: &crate::support::CliOutput) -> String {
    out.finished()["run_id"].as_str().unwrap().to_owned()
}

/// The collected value of a clean run of the fixed job, without a store.
fn clean_result(text: &str) -> Value {
    let clean = TestJob::new(text);
    let out = clean.run(&["--no-store"]);
    out.assert_code(0);
    out.output("all")
}

fn started(out: &crate::support::CliOutput) -> Vec<String> {
    let mut steps = out.steps_with("step_started");
    steps.sort();
    steps
}

#[test]
fn resume_after_a_config_fix_reruns_the_changed_op_and_the_failed_keys_downstream() {
    let job = TestJob::new(&job_text(
        ", on_key = { k1 = \"fail\", k3 = \"fail\" }",
        5,
        0,
    ));
    let first = job.run(&[]);
    first.assert_code(1);
    let run = run_id(&first);
    // Fix the op's config, then resume the same run. `work`'s config
    // changed, so none of its stored results is reused (they were computed
    // under the old config); the keys that had succeeded return the same
    // values, so what reads them is reused.
    let fixed = job_text("", 5, 0);
    job.rewrite(&fixed);
    let resumed = dynhost(
        job.dir(),
        &["resume", &run, "--json", "--store", ".dynhost"],
    );
    resumed.assert_code(0);
    assert_eq!(
        started(&resumed),
        [
            "all", "next[k1]", "next[k3]", "work[k0]", "work[k1]", "work[k2]", "work[k3]",
            "work[k4]"
        ]
    );
    assert_eq!(resumed.op_summary("work")["changed"], 3);
    let mut reused = resumed.steps_with("step_reused");
    reused.sort();
    assert_eq!(reused, ["emit", "next[k0]", "next[k2]", "next[k4]"]);
    assert_eq!(resumed.output("all"), clean_result(&fixed));
    // The store now shows the run as succeeded, each step once.
    let show = dynhost(job.dir(), &["show", &run]);
    show.assert_code(0);
    assert!(show.stdout.contains(": succeeded"), "{}", show.stdout);
    assert!(
        show.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["work", "5", "0", "0", "0"]),
        "{}",
        show.stdout
    );
}

#[test]
fn runs_show_and_logs_read_the_store() {
    let job = TestJob::new(&job_text(
        ", on_key = { k1 = \"fail\" }, print = \"hi\"",
        2,
        0,
    ));
    let out = job.run(&[]);
    out.assert_code(1);
    let run = run_id(&out);
    let runs = dynhost(job.dir(), &["runs"]);
    runs.assert_code(0);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&run))
        .unwrap_or_else(|| panic!("{}", runs.stdout));
    // The run's row, then its job's name and file.
    assert!(lines[at].contains("failed"), "{}", lines[at]);
    assert!(
        lines[at + 1].contains("resumable: ") && lines[at + 1].ends_with("job.toml"),
        "{}",
        lines[at + 1]
    );
    let show = dynhost(job.dir(), &["show", &run]);
    assert!(
        show.stdout
            .contains("work[k1] failed (op-error): probe was told to fail"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("next[k1] skipped"), "{}", show.stdout);
    let step = dynhost(job.dir(), &["show", &run, "work[k0]"]);
    step.assert_code(0);
    assert!(
        step.stdout.contains("step work[k0] of run") && step.stdout.contains("output "),
        "{}",
        step.stdout
    );
    assert!(
        step.stdout
            .contains("input ms (item of `emit.result`) (1 bytes): 0"),
        "{}",
        step.stdout
    );
    let logs = dynhost(job.dir(), &["logs", &run, "work[k0]"]);
    assert_eq!(
        logs.stdout,
        "--- stdout\nhi (stdout)\n--- stderr\nhi (stderr)\n--- log\n[info] hi (log)\n"
    );
    let missing = dynhost(job.dir(), &["show", "no-such-run"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no run `no-such-run`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn only_reruns_chosen_keys_and_what_depends_on_them() {
    let text = job_text("", 3, 0);
    let job = TestJob::new(&text);
    job.run(&[]).assert_code(0);
    let again = job.run(&["--only", "work[k1]"]);
    again.assert_code(0);
    assert_eq!(started(&again), ["all", "next[k1]", "work[k1]"]);
    assert_eq!(again.output("all"), clean_result(&text));
}

#[test]
fn a_re_run_emitter_with_fewer_keys_reports_the_vanished_ones() {
    let emit = |keys: &str, fail: bool| {
        format!(
            "name = \"v\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\nconfig.fail_after_emit = {fail}\nconfig.emit = [{keys}]\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\n"
        )
    };
    let job = TestJob::new(&emit(
        "{ key = \"a\", value = 1 }, { key = \"b\", value = 2 }, { key = \"c\", value = 3 }",
        true,
    ));
    let first = job.run(&[]);
    first.assert_code(1);
    let run = run_id(&first);
    let fewer = emit(
        "{ key = \"a\", value = 1 }, { key = \"b\", value = 2 }, { key = \"d\", value = 4 }",
        false,
    );
    job.rewrite(&fewer);
    let resumed = dynhost(
        job.dir(),
        &["resume", &run, "--json", "--store", ".dynhost"],
    );
    resumed.assert_code(0);
    assert_eq!(
        started(&resumed),
        ["emit", "work[d]"],
        "unchanged keys are reused, new keys run"
    );
    assert_eq!(
        resumed.finished()["vanished"],
        serde_json::json!(["work[c]"])
    );
}

#[test]
fn resume_after_sigkill_finishes_with_every_key_succeeded_exactly_once() {
    let keys = 120;
    let text = job_text("", keys, 25);
    let job = TestJob::new(&text);
    let mut child =
        crate::support::command(job.dir(), &["run", "job.toml", "--max-concurrent", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let db = job.dir().join(".dynhost/runs.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let succeeded = || -> i64 {
        let Some(conn) = crate::support::try_store_sql(&db) else {
            return 0;
        };
        conn.query_row(
            "SELECT count(*) FROM steps WHERE op = 'work' AND status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    while succeeded() < 20 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before = succeeded();
    assert!(
        done_before < keys as i64,
        "the run finished before it was killed; make it longer"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let run: String = conn
        .query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap();
    let resumed = dynhost(job.dir(), &["resume", &run, "--json"]);
    resumed.assert_code(0);
    assert_eq!(resumed.output("all"), clean_result(&text));
    let conn = crate::support::store_sql(&db);
    let mut per_step = conn
        .prepare(
            "SELECT op, keys, count(*) FROM (SELECT op, keys, status FROM steps UNION ALL
             SELECT op, keys, status FROM attempts) WHERE status = 'succeeded' GROUP BY op, keys",
        )
        .unwrap();
    let counts: Vec<(String, String, i64)> = per_step
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let work: Vec<_> = counts.iter().filter(|(op, _, _)| op == "work").collect();
    assert_eq!(work.len(), keys, "every work key succeeded");
    for (op, key, n) in &counts {
        assert_eq!(*n, 1, "{op}{key} succeeded {n} times across both processes");
    }
    assert!(
        resumed.steps_with("step_reused").len() as i64 >= done_before,
        "stored successes were not reused"
    );
}

#[test]
fn a_damaged_or_locked_store_is_a_clear_error() {
    let job = TestJob::new(&job_text("", 1, 0));
    job.write(".dynhost/runs.db", &"not a database ".repeat(300));
    let out = job.run(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is damaged or not a dynhost store"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(job.dir().join(".dynhost/runs.db")).unwrap(),
        "not a database ".repeat(300)
    );

    let locked = TestJob::new(&job_text("", 1, 0));
    locked.run(&[]).assert_code(0);
    let conn = rusqlite::Connection::open(locked.dir().join(".dynhost/runs.db")).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = locked.run(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is locked by another process"),
        "{}",
        out.stderr
    );
}

#[test]
fn cache_reuses_a_stored_success_with_the_same_component_config_and_inputs() {
    let text = |note: &str| {
        format!(
            "name = \"memo\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\nconfig.emit = [{{ key = \"a\", value = 1 }}, {{ key = \"b\", value = 2 }}]\n[ops.work]\ncomponent = \"{{probe}}\"\ncache = true\ninputs.v = {{ map = \"emit\" }}\nconfig = {{ note = \"{note}\" }}\n"
        )
    };
    let job = TestJob::new(&text("one"));
    let first = job.run(&[]);
    first.assert_code(0);
    assert_eq!(started(&first), ["emit", "work[a]", "work[b]"]);
    let second = job.run(&[]);
    second.assert_code(0);
    assert_eq!(started(&second), ["emit"], "cached steps ran again");
    let mut reused = second.steps_with("step_reused");
    reused.sort();
    assert_eq!(reused, ["work[a]", "work[b]"]);
    assert_eq!(second.output("work[a]"), first.output("work[a]"));
    job.rewrite(&text("two"));
    let changed = job.run(&[]);
    assert_eq!(
        started(&changed),
        ["emit", "work[a]", "work[b]"],
        "a config change must miss the cache"
    );
}

/// Issue 11: a stored success is reused only if the op's component and
/// config are unchanged too; `--only` and `--step` say what to rerun and
/// refuse selections that name nothing.
#[test]
fn a_changed_config_is_never_mixed_with_results_of_the_old_one() {
    let text = job_text("", 3, 0);
    let job = TestJob::new(&text);
    job.run(&[]).assert_code(0);
    // `work` gets a new config value its results do not show: `--only` one
    // key must still not collect the other keys' results of the old config.
    let changed = job_text(", print = \"v2\"", 3, 0);
    job.rewrite(&changed);
    let again = job.run(&["--only", "work[k1]"]);
    again.assert_code(0);
    assert_eq!(again.op_summary("work")["changed"], 2);
    assert_eq!(
        started(&again),
        ["all", "next[k1]", "work[k0]", "work[k1]", "work[k2]"]
    );
    let summary = dynhost(job.dir(), &["run", "job.toml", "--only", "work[k1]"]);
    assert!(
        !summary.stderr.contains("ran again"),
        "nothing changed since the last run: {}",
        summary.stderr
    );
    let resumed = dynhost(job.dir(), &["run", "job.toml", "--from", "latest"]);
    resumed.assert_code(0);
    job.rewrite(&text);
    let back = dynhost(job.dir(), &["run", "job.toml", "--from", "latest"]);
    back.assert_code(0);
    assert!(
        back.stderr
            .contains("work: 3 step(s) ran again: the op's component or config changed"),
        "{}",
        back.stderr
    );
}

#[test]
fn step_reruns_just_the_step_and_only_and_step_take_several_selectors() {
    let text = job_text("", 3, 0);
    let job = TestJob::new(&text);
    job.run(&[]).assert_code(0);
    // The step alone: its value is the same, so what reads it is reused.
    let step = job.run(&["--step", "work[k1]"]);
    step.assert_code(0);
    assert_eq!(started(&step), ["work[k1]"]);
    // Several selectors in one run.
    let two = job.run(&["--only", "work[k0]", "--only", "work[k2]"]);
    two.assert_code(0);
    assert_eq!(
        started(&two),
        ["all", "next[k0]", "next[k2]", "work[k0]", "work[k2]"]
    );
}

#[test]
fn selections_that_name_nothing_are_refused() {
    let job = TestJob::new(&job_text("", 3, 0));
    let first = job.run(&[]);
    first.assert_code(0);
    for (selection, wanted) in [
        ("work[nope]", "no step `work[nope]`; nearest: work[k"),
        ("work[]", "empty key"),
        ("work[k1][x]", "mapped 1 level(s) deep"),
        ("emit[k1]", "mapped 0 level(s) deep"),
        ("nope", "unknown op `nope`"),
    ] {
        for flag in ["--only", "--step"] {
            let out = job.run(&[flag, selection]);
            out.assert_code(2);
            assert!(
                out.stderr.contains(wanted) && out.stderr.contains(selection),
                "{flag} {selection}: {}",
                out.stderr
            );
        }
    }
    // `--from` a run of another job file needs saying so.
    let other = TestJob::new(&job_text("", 3, 0));
    let from = first.finished()["run_id"].as_str().unwrap().to_owned();
    let store = job.dir().join(".dynhost");
    let store = store.to_str().unwrap();
    let refused = other.run(&["--from", &from, "--store", store]);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("--from-other-job"),
        "{}",
        refused.stderr
    );
    other
        .run(&["--from", &from, "--store", store, "--from-other-job"])
        .assert_code(0);
}
