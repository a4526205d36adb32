//! Retries and tolerated failures (issue 3).

use crate::support::TestJob;
use serde_json::json;

const TWO_KEYS: &str = r#"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "a", value = 1 }, { key = "b", value = 2 }]
"#;

#[test]
fn a_retrying_key_gives_its_slot_back_while_it_waits() {
    let job = TestJob::new(&format!(
        r#"name = "retry"
{TWO_KEYS}
[ops.flaky]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
mounts = [{{ host = "state", guest = "/state", writable = true }}]
config = {{ fail_once_dir = "/state" }}
retries = 2
retry_backoff_secs = 1.0
"#
    ));
    job.write("state/.keep", "");
    let out = job.run(&["--max-concurrent", "1"]);
    out.assert_code(0);
    let events = out.events();
    let position = |event: &str, step: &str, attempt: Option<u64>| {
        events
            .iter()
            .position(|e| {
                e["event"] == event
                    && e["step"] == step
                    && attempt.is_none_or(|a| e["attempt"] == a)
            })
            .unwrap_or_else(|| panic!("no {event} for {step}: {}", out.stdout))
    };
    // With one slot, `b` can only start while `a` waits out its backoff if
    // the waiting retry does not hold the slot.
    assert!(
        position("step_retrying", "flaky[a]", None) < position("step_started", "flaky[b]", Some(1))
    );
    assert!(
        position("step_started", "flaky[b]", Some(1))
            < position("step_started", "flaky[a]", Some(2))
    );
    let retrying = &events[position("step_retrying", "flaky[a]", None)];
    assert_eq!(retrying["failure"]["kind"], "op-error");
    assert_eq!(out.step("flaky[a]")["status"], "succeeded");
    let flaky = out.op_summary("flaky");
    assert_eq!(flaky["retries"], 2);
}

#[test]
fn failures_that_would_repeat_are_not_retried() {
    for (extra, action) in [("", "alloc"), ("deterministic = true", "panic")] {
        let job = TestJob::new(&format!(
            "name = \"no-retry\"\n[ops.op]\ncomponent = \"{{probe}}\"\nretries = 3\nretry_backoff_secs = 0.0\n{extra}\nconfig.on_key = {{ \"*\" = \"{action}\" }}\nlimits = {{ memory_mib = 32 }}\n"
        ));
        let out = job.run(&[]);
        out.assert_code(1);
        assert!(
            out.steps_with("step_retrying").is_empty(),
            "{action} was retried: {}",
            out.stdout
        );
        assert_eq!(out.steps_with("step_started").len(), 1);
    }
}

fn tolerant_job(tolerance: &str) -> TestJob {
    TestJob::new(&format!(
        r#"name = "tolerate"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{{ key = "a", value = 1 }}, {{ key = "b", value = 2 }}, {{ key = "c", value = 3 }}, {{ key = "d", value = 4 }}]
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.on_key = {{ b = "fail" }}
[ops.all]
component = "{{probe}}"
inputs.results = {{ collect = "work", {tolerance} }}
"#
    ))
}

#[test]
fn a_tolerant_collect_runs_without_failed_keys_and_is_told_about_them() {
    for tolerance in ["max_failures = 1", "min_success = 0.75"] {
        let out = tolerant_job(tolerance).run(&[]);
        out.assert_code(0);
        let results = &out.output("all")["inputs"]["results"];
        let keys: Vec<_> = results["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[0].clone())
            .collect();
        assert_eq!(
            keys,
            [json!(["a"]), json!(["c"]), json!(["d"])],
            "{tolerance}"
        );
        assert_eq!(
            results["failed"],
            json!([[["b"], "op-error", "probe was told to fail"]]),
            "{tolerance}"
        );
        let work = out.op_summary("work");
        assert_eq!(
            (work["failed"].as_u64(), work["tolerated"].as_u64()),
            (Some(0), Some(1))
        );
    }
}

#[test]
fn a_collect_past_its_tolerance_is_skipped() {
    for (tolerance, reason) in [
        ("max_failures = 0", "more than its `max_failures` of 0"),
        ("min_success = 0.9", "below its `min_success` of 0.9"),
    ] {
        let out = tolerant_job(tolerance).run(&[]);
        out.assert_code(1);
        let skipped = out
            .events()
            .into_iter()
            .find(|e| e["event"] == "step_skipped" && e["step"] == "all")
            .unwrap();
        assert!(
            skipped["reason"].as_str().unwrap().contains(reason),
            "{skipped}"
        );
    }
}
