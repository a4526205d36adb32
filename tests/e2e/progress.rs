//! Issue 11: progress that tells the truth, and JSON events a tool can follow.

use crate::support::{TestJob, dynhost};

/// An emitter that takes ~1 s to emit its 10 keys, so its mapped op's total
/// is known only at the end.
fn slow_emitter() -> TestJob {
    let items: Vec<String> = (0..10)
        .map(|i| format!("{{ key = \"k{i}\", value = {i} }}"))
        .collect();
    TestJob::new(&format!(
        r#"name = "slow"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_sleep_ms = 100
config.emit = [{}]
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
[ops.all]
component = "{{probe}}"
inputs.vs = {{ collect = "work" }}
"#,
        items.join(", ")
    ))
}

#[test]
fn without_a_terminal_progress_lines_say_what_is_known_so_far() {
    let job = slow_emitter();
    let out = dynhost(job.dir(), &["run", "job.toml", "--progress-secs", "0.2"]);
    out.assert_code(0);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("progress: work: "))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" of ≥") && l.contains("emitter running")),
        "no line while the emitter ran:\n{}",
        out.stderr
    );
    assert_eq!(
        lines.last().copied(),
        Some("progress: work: 10 of 10 keys"),
        "{}",
        out.stderr
    );
    // An op that is not mapped never waits for an emitter.
    assert!(
        out.stderr.contains("progress: all: 1 of 1 keys"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("progress: emit: 1 of ≥"),
        "{}",
        out.stderr
    );
    // The summary labels its time columns for what they are.
    assert!(out.stderr.contains(" wall)"), "{}", out.stderr);
    assert!(out.stderr.contains("step time"), "{}", out.stderr);

    let quiet = dynhost(
        job.dir(),
        &["run", "job.toml", "--quiet", "--progress-secs", "0.2"],
    );
    quiet.assert_code(0);
    assert!(!quiet.stderr.contains("progress:"), "{}", quiet.stderr);
}

#[test]
fn json_starts_with_run_started_and_every_event_has_a_timestamp() {
    let job = slow_emitter();
    let out = job.run(&[]);
    out.assert_code(0);
    let events = out.events();
    let first = &events[0];
    assert_eq!(first["event"], "run_started", "{first}");
    assert_eq!(first["run_id"], out.finished()["run_id"]);
    assert_eq!(first["job"], "slow");
    assert!(
        first["store"]
            .as_str()
            .unwrap()
            .ends_with(".dynhost/runs.db"),
        "{first}"
    );
    let mut last = 0.0;
    for event in &events {
        let ts = event["ts"]
            .as_f64()
            .unwrap_or_else(|| panic!("no ts: {event}"));
        assert!(ts >= last, "timestamps go back: {event}");
        last = ts;
    }
}
