//! Dynamic mapping semantics (issue 2, points 1 to 8), on the probe op.

use crate::support::TestJob;
use serde_json::{Value, json};

/// An emitter that emits `keys` with values `values`.
fn emitter(keys: &[&str], values: &[Value]) -> String {
    let items: Vec<String> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{{ key = \"{k}\", value = {v} }}"))
        .collect();
    format!(
        "[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\nconfig.emit = [{}]\n",
        items.join(", ")
    )
}

fn collected_keys(value: &Value, input: &str) -> Vec<Value> {
    value["inputs"][input]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i[0].clone())
        .collect()
}

#[test]
fn each_key_gets_a_fresh_instance() {
    let job = TestJob::new(&format!(
        "name = \"fresh\"\n{}\n[ops.count]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\n",
        emitter(&["a", "b", "c", "d", "e", "f"], &vec![json!(1); 6])
    ));
    // One worker: every key runs on the same thread, one after another, so a
    // reused instance would show a counter above 1.
    let out = job.run(&["--max-concurrent", "1"]);
    out.assert_code(0);
    for key in ["a", "b", "c", "d", "e", "f"] {
        let value = out.output(&format!("count[{key}]"));
        assert_eq!(
            value["counter"], 1,
            "count[{key}] saw a used instance: {value}"
        );
        assert_eq!(value["keys"], json!([key]));
        assert_eq!(value["inputs"]["v"], 1);
    }
}

/// The largest number of spans that overlap at one instant.
fn max_overlap(spans: &[(u64, u64)]) -> usize {
    spans
        .iter()
        .map(|&(s, _)| spans.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

fn spans(out: &crate::support::CliOutput, keys: &[&str]) -> Vec<(u64, u64)> {
    keys.iter()
        .map(|k| {
            let span = out.output(&format!("work[{k}]"))["span_ms"].clone();
            (span[0].as_u64().unwrap(), span[1].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn mapped_keys_run_concurrently_up_to_the_limit() {
    let keys = ["a", "b", "c", "d"];
    let job = TestJob::new(&format!(
        "name = \"conc\"\n{}\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.ms = {{ map = \"emit\" }}\nconfig = {{ sleep_ms_input = \"ms\", timestamps = true }}\n",
        emitter(&keys, &vec![json!(300); 4])
    ));
    let serial = job.run(&["--max-concurrent", "1"]);
    serial.assert_code(0);
    assert_eq!(
        max_overlap(&spans(&serial, &keys)),
        1,
        "--max-concurrent 1 overlapped steps"
    );
    let parallel = job.run(&["--max-concurrent", "4"]);
    parallel.assert_code(0);
    let overlap = max_overlap(&spans(&parallel, &keys));
    assert!(
        overlap >= 2,
        "4 sleeping keys with --max-concurrent 4 never overlapped"
    );
}

#[test]
fn collect_is_in_emission_order_whatever_the_finish_order() {
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    let job = TestJob::new(&format!(
        "name = \"order\"\n{}\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.ms = {{ map = \"emit\" }}\nconfig = {{ sleep_ms_input = \"ms\" }}\n[ops.all]\ncomponent = \"{{probe}}\"\ninputs.results = {{ collect = \"work\" }}\n",
        emitter(
            &keys,
            &[json!(800), json!(600), json!(400), json!(200), json!(0)]
        )
    ));
    let out = job.run(&["--max-concurrent", "5"]);
    out.assert_code(0);
    let finished: Vec<String> = out
        .steps_with("step_finished")
        .into_iter()
        .filter(|s| s.starts_with("work["))
        .collect();
    assert_eq!(
        finished,
        ["work[k4]", "work[k3]", "work[k2]", "work[k1]", "work[k0]"],
        "keys did not finish in reverse"
    );
    let all = out.output("all");
    assert_eq!(
        collected_keys(&all, "results"),
        keys.iter().map(|k| json!([k])).collect::<Vec<_>>()
    );
    let values: Vec<Value> = all["inputs"]["results"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1]["keys"].clone())
        .collect();
    assert_eq!(
        values,
        keys.iter().map(|k| json!([k])).collect::<Vec<_>>(),
        "values are paired with their own keys"
    );
}

#[test]
fn chained_map_keeps_the_key_and_plain_inputs_reach_every_key() {
    let job = TestJob::new(&format!(
        r#"name = "chain"
{}
[ops.other]
component = "{{probe}}"
config = {{ note = "shared" }}
[ops.first]
component = "{{probe}}"
inputs.item = {{ map = "emit" }}
inputs.other = "other"
[ops.second]
component = "{{probe}}"
inputs.prev = {{ map = "first" }}
"#,
        emitter(&["x", "y"], &[json!("X"), json!("Y")])
    ));
    let out = job.run(&[]);
    out.assert_code(0);
    for (key, item) in [("x", "X"), ("y", "Y")] {
        let second = out.output(&format!("second[{key}]"));
        assert_eq!(second["keys"], json!([key]));
        let first = &second["inputs"]["prev"];
        assert_eq!(
            first["keys"],
            json!([key]),
            "second[{key}] read another key's value"
        );
        assert_eq!(first["inputs"]["item"], item);
        assert_eq!(
            first["inputs"]["other"]["op"], "other",
            "plain input not passed to {key}"
        );
    }
    let started = out.steps_with("step_started");
    assert_eq!(
        started.iter().filter(|s| s.as_str() == "other").count(),
        1,
        "plain upstream ran once"
    );
}

#[test]
fn named_dynamic_outputs_are_mapped_and_collected_separately() {
    let job = TestJob::new(
        r#"name = "named"
[ops.split]
component = "{probe}"
dynamic = ["small", "large"]
config.emit = [
  { out = "small", key = "s1", value = 1 },
  { out = "large", key = "l1", value = 100 },
  { out = "small", key = "s2", value = 2 },
  { out = "large", key = "l2", value = 200 },
]
[ops.each_small]
component = "{probe}"
inputs.v = { map = "split.small" }
[ops.all_large]
component = "{probe}"
inputs.vs = { collect = "split.large" }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(0);
    assert_eq!(out.output("each_small[s1]")["inputs"]["v"], 1);
    assert_eq!(out.output("each_small[s2]")["inputs"]["v"], 2);
    let large = out.output("all_large")["inputs"]["vs"]["items"].clone();
    assert_eq!(large, json!([[["l1"], 100], [["l2"], 200]]));
    assert!(
        !out.steps_with("step_started")
            .iter()
            .any(|s| s.starts_with("each_small[l"))
    );
}

#[test]
fn zero_items_run_no_mapped_step_and_collect_an_empty_list() {
    let job = TestJob::new(
        "name = \"empty\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\n[ops.work]\ncomponent = \"{probe}\"\ninputs.v = { map = \"emit\" }\n[ops.all]\ncomponent = \"{probe}\"\ninputs.vs = { collect = \"work\" }\n",
    );
    let out = job.run(&[]);
    out.assert_code(0);
    assert!(
        !out.steps_with("step_started")
            .iter()
            .any(|s| s.starts_with("work"))
    );
    assert_eq!(
        out.output("all")["inputs"]["vs"],
        json!({ "items": [], "failed": [] })
    );
}

#[test]
fn keys_allow_dash_and_dot_and_reject_bad_or_duplicate_keys() {
    let good = TestJob::new(&format!(
        "name = \"keys\"\n{}\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\n",
        emitter(&["2024-01-01.csv", "a_b"], &[json!(1), json!(2)])
    ));
    good.run(&[]).assert_code(0).output("work[2024-01-01.csv]");

    for (action, expected) in [
        (
            "bad_key",
            "op `emit` emitted invalid mapping key \"no spaces allowed\": keys must be 1 to 128 characters from `A-Z a-z 0-9 _ - .`, not `.` or `..`",
        ),
        (
            "dup_key",
            "op `emit` emitted mapping key `same` twice on output `result`; keys must be unique within an output",
        ),
    ] {
        let job = TestJob::new(&format!(
            "name = \"keys\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\nconfig.on_key = {{ \"*\" = \"{action}\" }}\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\n"
        ));
        let out = job.run(&[]);
        out.assert_code(1);
        let step = out.step("emit");
        assert_eq!(step["failure"]["kind"], "invalid-key", "{step}");
        assert_eq!(step["failure"]["message"], expected);
    }
}

#[test]
fn nested_fan_out_runs_per_outer_and_inner_key() {
    let job = TestJob::new(&format!(
        r#"name = "nested"
{}
[ops.inner]
component = "{{probe}}"
dynamic = true
inputs.outer = {{ map = "emit" }}
config.emit = [{{ key = "x", value = "X" }}, {{ key = "y", value = "Y" }}]
[ops.leaf]
component = "{{probe}}"
inputs.item = {{ map = "inner" }}
[ops.per_outer]
component = "{{probe}}"
inputs.outer = {{ map = "emit" }}
inputs.leaves = {{ collect = "leaf" }}
[ops.everything]
component = "{{probe}}"
inputs.leaves = {{ collect = "leaf" }}
"#,
        emitter(&["a", "b"], &[json!("A"), json!("B")])
    ));
    let out = job.run(&[]);
    out.assert_code(0);
    let mut leaves = out.steps_with("step_finished");
    leaves.retain(|s| s.starts_with("leaf"));
    leaves.sort();
    assert_eq!(
        leaves,
        ["leaf[a][x]", "leaf[a][y]", "leaf[b][x]", "leaf[b][y]"]
    );
    assert_eq!(out.output("per_outer[a]")["inputs"]["outer"], "A");
    assert_eq!(
        collected_keys(&out.output("per_outer[b]"), "leaves"),
        [json!(["x"]), json!(["y"])]
    );
    let everything = out.output("everything");
    assert_eq!(
        collected_keys(&everything, "leaves"),
        [
            json!(["a", "x"]),
            json!(["a", "y"]),
            json!(["b", "x"]),
            json!(["b", "y"])
        ]
    );
    assert_eq!(
        everything["inputs"]["leaves"]["items"][3][1]["keys"],
        json!(["b", "y"])
    );
}

#[test]
fn a_failed_key_fails_alone_and_skips_only_its_dependants() {
    let job = TestJob::new(&format!(
        r#"name = "partial"
{}
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.on_key = {{ b = "fail", c = "panic" }}
[ops.after]
component = "{{probe}}"
inputs.w = {{ map = "work" }}
[ops.all]
component = "{{probe}}"
inputs.ws = {{ collect = "after" }}
"#,
        emitter(&["a", "b", "c", "d"], &vec![json!(1); 4])
    ));
    let out = job.run(&[]);
    out.assert_code(1);
    assert_eq!(out.step("work[b]")["failure"]["kind"], "op-error");
    assert_eq!(
        out.step("work[b]")["failure"]["message"],
        "probe was told to fail"
    );
    let panicked = out.step("work[c]");
    assert_eq!(panicked["failure"]["kind"], "trap");
    assert!(
        panicked["stderr"]
            .as_str()
            .unwrap()
            .contains("probe was told to panic"),
        "{panicked}"
    );
    for ok in ["after[a]", "after[d]"] {
        assert_eq!(out.step(ok)["status"], "succeeded");
    }
    let mut skipped = out.steps_with("step_skipped");
    skipped.sort();
    assert_eq!(skipped, ["after[b]", "after[c]", "all"]);
    let work = out.op_summary("work");
    assert_eq!(
        (work["succeeded"].as_u64(), work["failed"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn an_op_that_emits_without_declaring_a_dynamic_output_fails_its_step_and_says_how_to_fix_it() {
    // The probe emits what `config.emit` lists; this op does not say
    // `dynamic = true`, so it has no output to emit on. Its step fails with
    // the reason (the items never reach the run), and the op next to it
    // runs as usual.
    let job = TestJob::new(
        "name = \"undeclared\"\n\
         [ops.emit]\ncomponent = \"{probe}\"\nconfig.emit = [{ key = \"a\", value = 1 }]\n\
         [ops.plain]\ncomponent = \"{probe}\"\n",
    );
    let out = job.run(&[]);
    out.assert_code(1);
    let failure = out.step("emit")["failure"].clone();
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("which it does not declare")
            && message.contains("add `dynamic = true` to the op in job.toml"),
        "{failure}"
    );
    assert_eq!(out.step("plain")["failure"], Value::Null, "{}", out.stderr);
    assert_eq!(out.step("emit")["stats"]["emitted_items"], 0);
}
