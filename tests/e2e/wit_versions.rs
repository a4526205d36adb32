//! Issue 12, WIT 0.2.0: components built against `dynhost:op@0.1.0` run
//! next to 0.2.0 ones; 0.2.0 ops attach metadata to items and results and
//! may return "no value" on an optional result.

use crate::support::{TestJob, dynhost, guest};
use serde_json::{Value, json};

/// The WIT version a component's `dynhost:op/op` export names, read from its
/// bytes, so the tests cannot pass with both guests on one version.
fn op_export_version(component: &str) -> &'static str {
    let bytes = std::fs::read(guest(component)).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    match (has("dynhost:op/op@0.1.0"), has("dynhost:op/op@0.2.0")) {
        (true, false) => "0.1.0",
        (false, true) => "0.2.0",
        other => panic!("{component}: unexpected exports {other:?}"),
    }
}

fn run_id(out: &crate::support::CliOutput) -> String {
    out.events()
        .iter()
        .find(|e| e["event"] == "run_started")
        .and_then(|e| e["run_id"].as_str())
        .expect("run_started")
        .to_owned()
}

#[test]
fn a_0_1_0_component_runs_next_to_a_0_2_0_one() {
    assert_eq!(op_export_version("trivial"), "0.1.0");
    assert_eq!(op_export_version("probe"), "0.2.0");
    let trivial = guest("trivial").display().to_string();
    let job = TestJob::new(&format!(
        r#"name = "mixed-versions"
[ops.emit]
component = "{trivial}"
dynamic = true
config = {{ emit = 3 }}
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
[ops.all]
component = "{trivial}"
inputs.vs = {{ collect = "work" }}
[ops.seen]
component = "{{probe}}"
inputs.vs = {{ collect = "work" }}
"#
    ));
    dynhost(job.dir(), &["validate", "job.toml"]).assert_code(0);
    let out = job.run(&[]);
    out.assert_code(0);
    // The 0.2.0 probe saw the 0.1.0 emitter's items; the 0.1.0 collect
    // counted the 0.2.0 results.
    assert_eq!(out.step("work[k1]")["status"], "succeeded");
    assert_eq!(out.output("all"), json!(3));
    let seen = out.output("seen");
    let keys: Vec<&Value> = seen["inputs"]["vs"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item[0][0])
        .collect();
    assert_eq!(keys, [&json!("k0"), &json!("k1"), &json!("k2")]);
}

fn metadata_job(extra: &str) -> String {
    format!(
        r#"name = "metadata"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [
  {{ key = "a", value = 1, metadata = [{{ label = "rows", kind = "integer", value = 3 }}, {{ label = "link", kind = "url", value = "https://example.com/a" }}] }},
  {{ key = "b", value = 2 }},
]
config.result_metadata = [{{ label = "ratio", kind = "float", value = 0.5 }}, {{ label = "preview", kind = "json", value = '{{"x": [1, 2]}}' }}, {{ label = "done", kind = "boolean", value = true }}]
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
{extra}
"#
    )
}

#[test]
fn metadata_on_items_and_results_is_sent_stored_shown_and_kept_by_resume() {
    // `work[b]` fails the first time, so the run is resumed.
    let job = TestJob::new(&metadata_job(r#"config.on_key = { b = "fail" }"#));
    let out = job.run(&[]);
    out.assert_code(1);
    let items: Vec<Value> = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "item_metadata")
        .collect();
    assert_eq!(items.len(), 1, "only the item with metadata makes an event");
    assert_eq!(items[0]["step"], "emit");
    assert_eq!(items[0]["output"], "result");
    assert_eq!(items[0]["key"], "a");
    assert_eq!(
        items[0]["metadata"],
        json!([
            {"label": "rows", "kind": "integer", "value": 3},
            {"label": "link", "kind": "url", "value": "https://example.com/a"},
        ])
    );
    assert_eq!(
        out.step("emit")["metadata"],
        json!([
            {"label": "ratio", "kind": "float", "value": 0.5},
            {"label": "preview", "kind": "json", "value": {"x": [1, 2]}},
            {"label": "done", "kind": "boolean", "value": true},
        ])
    );
    assert!(out.step("work[a]").get("metadata").is_none());

    let run = run_id(&out);
    let show = || {
        let show = dynhost(job.dir(), &["show", &run, "emit"]);
        show.assert_code(0);
        show.stdout
    };
    let shown = show();
    for line in [
        "metadata        ratio: 0.5",
        "metadata        preview: {\"x\":[1,2]} (json)",
        "metadata        done: true",
        "item result[a] metadata: rows: 3, link: https://example.com/a (url)",
    ] {
        assert!(shown.contains(line), "`{line}` missing from:\n{shown}");
    }
    assert!(!shown.contains("result[b]"), "{shown}");

    // Fixed and resumed: the emitter is reused, not rerun; its metadata and
    // its items' stay.
    job.rewrite(&metadata_job(""));
    let resumed = dynhost(job.dir(), &["resume", &run, "--json"]);
    resumed.assert_code(0);
    assert!(
        resumed
            .steps_with("step_reused")
            .contains(&"emit".to_owned())
    );
    assert_eq!(show(), shown);
}

#[test]
fn bad_metadata_fails_the_step_naming_the_entry() {
    let job = TestJob::new(
        r#"name = "bad-metadata"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "a", value = 1, metadata = [{ label = "p", kind = "json", value = "{not json" }] }]
[ops.result]
component = "{probe}"
config.result_metadata = [{ label = "", kind = "text", value = "x" }]
"#,
    );
    let out = job.run(&[]);
    out.assert_code(1);
    let failure = &out.step("emit")["failure"];
    assert_eq!(failure["kind"], "op-error", "{failure}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("key `a`")
            && message.contains("metadata entry `p` is declared json but does not parse"),
        "{message}"
    );
    let failure = &out.step("result")["failure"];
    assert_eq!(failure["kind"], "op-error", "{failure}");
    assert!(
        failure["message"].as_str().unwrap().contains("empty label"),
        "{failure}"
    );
}

fn optional_job(required: bool) -> String {
    format!(
        r#"name = "optional-result"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_count = 3
[ops.check]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.on_key = {{ k1 = "no_value" }}
returns = {{ required = {required} }}
[ops.after]
component = "{{probe}}"
inputs.c = {{ map = "check" }}
[ops.all]
component = "{{probe}}"
inputs.cs = {{ collect = "check" }}
"#
    )
}

#[test]
fn an_optional_result_with_no_value_skips_its_readers_and_leaves_collects() {
    let job = TestJob::new(&optional_job(false));
    let plan = dynhost(job.dir(), &["plan", "job.toml"]);
    plan.assert_code(0);
    assert!(
        plan.stdout
            .contains("returns    optional: may return no value, which skips its readers"),
        "{}",
        plan.stdout
    );
    let out = job.run(&[]);
    out.assert_code(0);
    let check = out.step("check[k1]");
    assert_eq!(check["status"], "succeeded");
    assert_eq!(check["no_value"], true);
    let skipped = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_skipped" && e["step"] == "after[k1]")
        .unwrap_or_else(|| panic!("after[k1] was not skipped: {}", out.stdout));
    assert_eq!(
        skipped["reason"],
        "optional output `check.result` produced no value"
    );
    assert_eq!(out.step("after[k0]")["status"], "succeeded");
    assert_eq!(out.op_summary("after")["skipped_optional"], 1);
    assert_eq!(out.op_summary("after")["skipped"], 0);
    // The collect gets the two values there are, and no failure.
    let all = out.output("all");
    let keys: Vec<&Value> = all["inputs"]["cs"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item[0][0])
        .collect();
    assert_eq!(keys, [&json!("k0"), &json!("k2")]);
    assert_eq!(all["inputs"]["cs"]["failed"], json!([]));
    let show = dynhost(job.dir(), &["show", &run_id(&out), "check[k1]"]);
    show.assert_code(0);
    assert!(
        show.stdout.contains("output          no value"),
        "{}",
        show.stdout
    );

    // Required (the default): "no value" fails the step, naming the fix.
    let job = TestJob::new(&optional_job(true));
    let out = job.run(&[]);
    out.assert_code(1);
    let failure = &out.step("check[k1]")["failure"];
    assert_eq!(failure["kind"], "op-error");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("declare `returns = { required = false }`"),
        "{failure}"
    );
}

fn named_job(fail_sum: bool) -> String {
    let on_key = if fail_sum {
        r#"config.on_key = { "*" = "fail" }"#
    } else {
        ""
    };
    format!(
        r#"name = "named-outputs"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_count = 3
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
outputs.size = {{ plain = true, type = "json", description = "bytes read" }}
outputs.note = {{ plain = true, required = false }}
config.set_outputs = {{ size = 7 }}
config.set_outputs_on_key = {{ k0 = {{ note = "hi" }} }}
config.output_metadata = {{ size = [{{ label = "unit", kind = "text", value = "bytes" }}] }}
[ops.double]
component = "{{probe}}"
inputs.s = {{ map = "work.size" }}
[ops.notes]
component = "{{probe}}"
inputs.n = {{ map = "work.note" }}
[ops.sum]
component = "{{probe}}"
inputs.sizes = {{ collect = "work.size" }}
{on_key}
"#
    )
}

#[test]
fn named_plain_outputs_are_set_read_collected_shown_and_resumed() {
    let job = TestJob::new(&named_job(true));
    let plan = dynhost(job.dir(), &["plan", "job.toml"]);
    plan.assert_code(0);
    assert!(
        plan.stdout
            .contains("outputs    note (optional), size (json: bytes read)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("input      s = the value of `work.size`"),
        "{}",
        plan.stdout
    );
    // `sum` fails the first time, so the run is resumed below.
    let out = job.run(&[]);
    out.assert_code(1);
    assert_eq!(
        out.step("work[k0]")["outputs"],
        json!({
            "note": {"set": true, "bytes": 4},
            "size": {"set": true, "bytes": 1, "metadata": [{"label": "unit", "kind": "text", "value": "bytes"}]},
        })
    );
    assert_eq!(out.step("work[k1]")["outputs"]["note"]["set"], false);
    // A mapped reader of `work.size` sees each key's value.
    for key in ["k0", "k1", "k2"] {
        assert_eq!(out.output(&format!("double[{key}]"))["inputs"]["s"], 7);
    }
    // `note` is optional: set only for k0; the others skip their readers.
    assert_eq!(out.output("notes[k0]")["inputs"]["n"], "hi");
    let skipped = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_skipped" && e["step"] == "notes[k1]")
        .unwrap_or_else(|| panic!("notes[k1] was not skipped: {}", out.stdout));
    assert_eq!(
        skipped["reason"],
        "optional output `work.note` produced no value"
    );
    let run = run_id(&out);
    let show = dynhost(job.dir(), &["show", &run, "work[k0]"]);
    show.assert_code(0);
    for line in [
        "output size (1 bytes): 7",
        "output note (4 bytes): \"hi\"",
        "metadata size: unit: bytes",
    ] {
        assert!(show.stdout.contains(line), "`{line}`:\n{}", show.stdout);
    }

    // Resumed with `sum` fixed: `work` is reused from the store, and its
    // named outputs come back from there for `sum` to collect.
    job.rewrite(&named_job(false));
    let resumed = dynhost(job.dir(), &["resume", &run, "--json"]);
    resumed.assert_code(0);
    assert!(
        resumed
            .steps_with("step_reused")
            .contains(&"work[k2]".to_owned()),
        "{}",
        resumed.stdout
    );
    let sum = resumed.output("sum");
    let sizes: Vec<&Value> = sum["inputs"]["sizes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item[1])
        .collect();
    assert_eq!(sizes, [&json!(7), &json!(7), &json!(7)]);
}

#[test]
fn named_outputs_that_are_missing_undeclared_or_mistyped_fail_their_step() {
    let job = TestJob::new(
        r#"name = "named-bad"
[ops.missing]
component = "{probe}"
outputs.x = { plain = true }
[ops.undeclared]
component = "{probe}"
config.set_outputs = { nope = 1 }
[ops.mistyped]
component = "{probe}"
outputs.s = { plain = true, schema = { type = "string" } }
config.set_outputs = { s = 7 }
[ops.twice]
component = "{probe}"
outputs.s = { plain = true }
config.set_outputs = { s = 1 }
config.set_outputs_on_key = { "" = { s = 2 } }
[ops.stray_metadata]
component = "{probe}"
config.output_metadata = { nope = [{ label = "l", kind = "text", value = "v" }] }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(1);
    let failure = |step: &str| out.step(step)["failure"].clone();
    assert_eq!(failure("missing")["kind"], "op-error");
    assert!(
        failure("missing")["message"]
            .as_str()
            .unwrap()
            .contains("did not set its output `x`; set it with `set-output`, or declare `outputs.x.required = false`"),
        "{}",
        failure("missing")
    );
    assert!(
        failure("undeclared")["message"]
            .as_str()
            .unwrap()
            .contains("add `outputs.nope = { plain = true }`"),
        "{}",
        failure("undeclared")
    );
    assert_eq!(failure("mistyped")["kind"], "type-check");
    assert!(
        failure("twice")["message"]
            .as_str()
            .unwrap()
            .contains("set output `s` twice; a plain output is set once per step"),
        "{}",
        failure("twice")
    );
    assert!(
        failure("stray_metadata")["message"]
            .as_str()
            .unwrap()
            .contains("added metadata to output `nope`, which is neither `result` nor one of its plain outputs"),
        "{}",
        failure("stray_metadata")
    );

    // A reader naming an output that does not exist is refused up front.
    let typo = TestJob::new(
        r#"name = "named-typo"
[ops.a]
component = "{probe}"
outputs.size = { plain = true }
[ops.b]
component = "{probe}"
inputs.s = "a.sise"
"#,
    );
    let validate = dynhost(typo.dir(), &["validate", "job.toml"]);
    validate.assert_code(2);
    assert!(validate.stderr.contains("`size`"), "{}", validate.stderr);
}
