//! Issue 10: interruption is a state. Ctrl-C and SIGTERM stop a run cleanly
//! and say how to resume it; a run whose process died shows as interrupted;
//! a run still owned by a live process cannot be resumed next to it.

use crate::support::{Running, TestJob, dynhost};
use std::time::Duration;

/// Ten keys that each sleep far past the test, two at a time.
const SLEEPY: &str = r#"name = "sleepy"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 10
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { "*" = "sleep" }
limits = { timeout_secs = 600 }
"#;

/// The same job fixed: the keys return at once.
const FIXED: &str = r#"name = "sleepy"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_count = 10
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
"#;

fn start(job: &TestJob) -> Running {
    let run = Running::start(
        job.dir(),
        &["run", "--json", "--max-concurrent", "2", "job.toml"],
    );
    run.wait_for_line(Duration::from_secs(60), |line| {
        line.contains("step_started") && line.contains("work[")
    });
    run
}

fn run_id(job: &TestJob) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        job.dir().join(".dynhost/runs.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sigint_and_sigterm_stop_a_run_cleanly_and_it_resumes() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let job = TestJob::new(SLEEPY);
        let mut run = start(&job);
        run.signal(signal);
        assert_eq!(run.wait(Duration::from_secs(30)), code, "SIG{signal}");
        let id = run_id(&job);
        let stderr = run.stderr();
        assert!(
            stderr.contains(&format!("dynhost resume {id}")),
            "SIG{signal}: {stderr}"
        );
        let runs = dynhost(job.dir(), &["runs"]);
        assert!(runs.stdout.contains("interrupted"), "{}", runs.stdout);
        let show = dynhost(job.dir(), &["show", &id]);
        assert!(show.stdout.contains("interrupted"), "{}", show.stdout);
        // Fixed, the run resumes under the same id and every key runs once.
        job.rewrite(FIXED);
        let resumed = dynhost(job.dir(), &["resume", "--json", &id]);
        resumed.assert_code(0);
        assert_eq!(resumed.op_summary("work")["succeeded"], 10);
    }
}

#[test]
fn a_killed_run_shows_as_interrupted_and_a_live_one_cannot_be_resumed() {
    let job = TestJob::new(SLEEPY);
    let run = start(&job);
    let id = run_id(&job);
    let twice = dynhost(job.dir(), &["resume", &id]);
    twice.assert_code(2);
    assert!(
        twice.stderr.contains("still running") && twice.stderr.contains(&run.pid().to_string()),
        "{}",
        twice.stderr
    );
    run.signal("KILL");
    drop(run);
    let runs = dynhost(job.dir(), &["runs"]);
    let line = runs.stdout.lines().find(|l| l.contains(&id)).unwrap();
    assert!(line.contains("interrupted"), "{line}");
    job.rewrite(FIXED);
    dynhost(job.dir(), &["resume", &id]).assert_code(0);
}
