//! Issue 10: time limits hold whatever the op is doing, and a slow step
//! holds up no other step. A step blocked inside a WASI call (a sleep, a
//! poll that never becomes ready, a read of a FIFO nobody writes) runs no
//! wasm, so the epoch deadline alone never stops it.

use crate::support::{Running, TestJob};
use std::time::Duration;

/// Each role an op can have, blocked in WASI, ends at its `timeout_secs` as
/// `timeout`; a retried step times out on every attempt; the run ends.
#[test]
fn steps_blocked_in_wasi_stop_at_their_time_limit() {
    let job = TestJob::new(
        r#"name = "blocked"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "fast", value = 1 }, { key = "sleeps", value = 2 }, { key = "forever", value = 3 }]
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { sleeps = "sleep", forever = "sleep_forever" }
limits = { timeout_secs = 2 }
[ops.gather]
component = "{probe}"
inputs.all = { collect = "work", max_failures = 2 }
config.on_key = { "*" = "sleep" }
limits = { timeout_secs = 1 }
[ops.stuck_emitter]
component = "{probe}"
dynamic = true
config.on_key = { "*" = "sleep" }
limits = { timeout_secs = 1 }
[ops.after_stuck]
component = "{probe}"
inputs.v = { map = "stuck_emitter" }
[ops.retried]
component = "{probe}"
config.on_key = { "*" = "sleep" }
limits = { timeout_secs = 1 }
retries = 1
retry_backoff_secs = 0.0
[ops.fifo_reader]
component = "{probe}"
mounts = [{ host = "pipes", guest = "/pipes" }]
config.read_file = "/pipes/fifo"
limits = { timeout_secs = 1 }
"#,
    );
    make_fifo(&job);
    let out = job.run_within(Duration::from_secs(60), &[]);
    out.assert_code(1);
    assert_eq!(out.step("work[fast]")["status"], "succeeded");
    for step in [
        "work[sleeps]",
        "work[forever]",
        "gather",
        "stuck_emitter",
        "retried",
        "fifo_reader",
    ] {
        let finished = out.step(step);
        assert_eq!(finished["status"], "failed", "{step}: {finished}");
        assert_eq!(finished["failure"]["kind"], "timeout", "{step}: {finished}");
        assert!(
            finished["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("`timeout_secs` limit of"),
            "{step}: {finished}"
        );
    }
    assert_eq!(out.op_summary("retried")["retries"], 1);
    assert_eq!(
        out.steps_with("step_retrying"),
        ["retried"],
        "the blocked step was retried once"
    );
}

/// One key sleeps until its time limit; hundreds of others finish and are
/// reported — as `--json` events and as store rows — long before it.
#[test]
fn a_stuck_step_holds_up_no_other_step() {
    const KEYS: u64 = 300;
    const TIMEOUT_SECS: u64 = 10;
    let job = TestJob::new(&format!(
        r#"name = "stuck"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_count = {KEYS}
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.on_key = {{ k7 = "sleep" }}
limits = {{ timeout_secs = {TIMEOUT_SECS} }}
"#
    ));
    let mut run = Running::start(job.dir(), &["run", "--json", "job.toml"]);
    let mut others = 0;
    let mut stuck_at = None;
    let mut others_done_at = None;
    while let Some((at, line)) = run.next_line(Duration::from_secs(2 * TIMEOUT_SECS)) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] != "step_finished" {
            continue;
        }
        if event["step"] == "work[k7]" {
            stuck_at = Some(at);
        } else if event["step"].as_str().unwrap().starts_with("work[") {
            assert_eq!(event["status"], "succeeded", "{event}");
            others += 1;
            if others == KEYS - 1 {
                others_done_at = Some(at);
                // While k7 still sleeps, the others are in the store too.
                let rows = succeeded_rows(&job, "work", KEYS - 1, Duration::from_secs(3));
                assert!(rows >= KEYS - 1, "only {rows} rows recorded");
                assert!(stuck_at.is_none(), "k7 ended before the others were in");
            }
        }
    }
    assert_eq!(run.wait(Duration::from_secs(30)), 1);
    let (stuck_at, others_done_at) = (stuck_at.unwrap(), others_done_at.unwrap());
    assert!(
        stuck_at.duration_since(others_done_at) >= Duration::from_secs(TIMEOUT_SECS / 2),
        "the other keys were reported only {:?} before the stuck one",
        stuck_at.duration_since(others_done_at)
    );
}

/// Succeeded rows of `op` in the job's store, polled for up to `within`
/// until there are `min` (the recorder commits in the background).
fn succeeded_rows(job: &TestJob, op: &str, min: u64, within: Duration) -> u64 {
    let db = job.dir().join(".dynhost/runs.db");
    let deadline = std::time::Instant::now() + within;
    let mut rows = 0;
    while std::time::Instant::now() < deadline {
        if let Some(conn) = crate::support::try_store_sql(&db) {
            rows = conn
                .query_row(
                    "SELECT count(*) FROM steps WHERE op = ?1 AND status = 'succeeded'",
                    [op],
                    |r| r.get::<_, i64>(0),
                )
                .map_or(0, |n| n.unsigned_abs());
        }
        if rows >= min {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rows
}

/// Issue 15 runs file calls on the worker's own thread: a step blocked
/// opening a FIFO nobody writes is signalled out of it — at its time limit
/// (above) and when the run is interrupted (here), well before its 600 s.
#[test]
fn ctrl_c_ends_a_step_blocked_in_a_file_call() {
    let job = TestJob::new(
        r#"name = "fifo"
[ops.fifo_reader]
component = "{probe}"
mounts = [{ host = "pipes", guest = "/pipes" }]
config.read_file = "/pipes/fifo"
limits = { timeout_secs = 600 }
"#,
    );
    make_fifo(&job);
    let mut run = Running::start(job.dir(), &["run", "--json", "job.toml"]);
    run.wait_for_line(Duration::from_secs(60), |line| {
        line.contains("step_started") && line.contains("fifo_reader")
    });
    std::thread::sleep(Duration::from_millis(300));
    let signalled = std::time::Instant::now();
    run.signal("INT");
    assert_eq!(run.wait(Duration::from_secs(30)), 130, "{}", run.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let stderr = run.stderr();
    assert!(stderr.contains("dynhost resume"), "{stderr}");
}

/// `pipes/fifo` beside the job: a FIFO nobody writes, so opening it for
/// reading blocks.
fn make_fifo(job: &TestJob) {
    std::fs::create_dir(job.dir().join("pipes")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(job.dir().join("pipes/fifo"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
}
