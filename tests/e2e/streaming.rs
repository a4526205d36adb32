//! Streaming (issue 4): mapped keys start while the emitter still emits, and
//! chained maps pipeline per key.

use crate::support::TestJob;

#[test]
fn mapped_keys_finish_while_the_emitter_still_runs() {
    let job = TestJob::new(
        r#"name = "stream"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit_sleep_ms = 300
config.emit = [{ key = "a", value = 0 }, { key = "b", value = 0 }, { key = "c", value = 0 }, { key = "d", value = 0 }]
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
[ops.next]
component = "{probe}"
inputs.w = { map = "work" }
[ops.all]
component = "{probe}"
inputs.ns = { collect = "next" }
"#,
    );
    let out = job.run(&["--max-concurrent", "2"]);
    out.assert_code(0);
    let finished = out.steps_with("step_finished");
    let at = |step: &str| {
        finished
            .iter()
            .position(|s| s == step)
            .unwrap_or_else(|| panic!("{step} missing"))
    };
    // Dagster waits for the whole fan-out (dagster#11475) and for all of
    // `work` before `next` (dagster#31035); here both run per key, at once.
    assert!(
        at("work[a]") < at("emit"),
        "work[a] waited for the emitter: {finished:?}"
    );
    assert!(
        at("next[a]") < at("emit"),
        "next[a] waited for all of work: {finished:?}"
    );
    assert!(at("all") > at("next[d]"));
    let keys: Vec<_> = out.output("all")["inputs"]["ns"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0][0].clone())
        .collect();
    assert_eq!(
        keys,
        ["a", "b", "c", "d"],
        "collect order stays emission order"
    );
}
