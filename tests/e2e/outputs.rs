//! Issue 12: Dagster's `DynamicOut(is_required=False)`: an optional dynamic
//! output that ends with no items skips what is mapped over it and what
//! collects it, without failing the run; descriptions show in `plan`.

use crate::support::TestJob;

fn job(count: usize, required: bool) -> String {
    format!(
        r#"name = "optional"
[ops.emit]
component = "{{probe}}"
description = "lists the work"
dynamic = true
config.emit_count = {count}
outputs.result = {{ required = {required}, description = "one item per unit of work" }}
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
[ops.all]
component = "{{probe}}"
inputs.vs = {{ collect = "work" }}
[ops.after]
component = "{{probe}}"
inputs.a = "all"
"#
    )
}

#[test]
fn an_empty_optional_output_skips_its_map_and_collect_without_failing() {
    let optional = TestJob::new(&job(0, false));
    let out = optional.run(&[]);
    out.assert_code(0);
    let skipped = out.events();
    let reason = |step: &str| {
        skipped
            .iter()
            .find(|e| e["event"] == "step_skipped" && e["step"] == step)
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{step} was not skipped: {}", out.stdout))
    };
    assert_eq!(
        reason("all"),
        "optional output `emit.result` produced no items"
    );
    assert_eq!(
        reason("after"),
        "input `a` from `all` was skipped: optional output `emit.result` produced no items"
    );
    assert_eq!(out.op_summary("all")["skipped_optional"], 1);
    assert_eq!(out.op_summary("all")["skipped"], 0);
    assert_eq!(out.op_summary("work")["steps"], 0);
    assert_eq!(
        out.finished()["empty_maps"],
        serde_json::json!(["work under emit: optional output `emit.result` produced no items"])
    );
    let summary = crate::support::dynhost(optional.dir(), &["run", "job.toml"]);
    summary.assert_code(0);
    assert!(
        summary.stderr.contains(
            "work under emit: optional output `emit.result` produced no items: no keys, skipped"
        ),
        "{}",
        summary.stderr
    );

    // Descriptions come back with the run, from the plan it ran.
    let show = crate::support::dynhost(optional.dir(), &["show", "latest"]);
    show.assert_code(0);
    for line in [
        "about emit: lists the work",
        "about emit.result: one item per unit of work",
    ] {
        assert!(show.stdout.contains(line), "`{line}`: {}", show.stdout);
    }

    // Required (the default): the collect runs with an empty list.
    let required = TestJob::new(&job(0, true));
    let out = required.run(&[]);
    out.assert_code(0);
    assert_eq!(out.op_summary("all")["succeeded"], 1);
    assert_eq!(out.op_summary("after")["succeeded"], 1);

    // Optional with items: nothing is skipped.
    let some = TestJob::new(&job(2, false));
    let out = some.run(&[]);
    out.assert_code(0);
    assert_eq!(out.op_summary("work")["succeeded"], 2);
    assert_eq!(out.op_summary("after")["succeeded"], 1);
}

#[test]
fn nested_optional_outputs_skip_only_the_empty_keys() {
    let job = TestJob::new(
        r#"name = "nested"
[ops.outer]
component = "{probe}"
dynamic = true
config.emit = [{ key = "k0", value = [] }, { key = "k1", value = ["a", "b"] }]
[ops.inner]
component = "{probe}"
dynamic = true
inputs.v = { map = "outer" }
config.emit_input = "v"
outputs.result = { required = false }
[ops.leaf]
component = "{probe}"
inputs.x = { map = "inner" }
[ops.per_outer]
component = "{probe}"
inputs.o = { map = "outer" }
inputs.ls = { collect = "leaf" }
[ops.top]
component = "{probe}"
inputs.ls = { collect = "leaf" }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(0);
    assert_eq!(out.step("per_outer[k1]")["status"], "succeeded");
    assert!(
        out.steps_with("step_skipped")
            .contains(&"per_outer[k0]".to_owned()),
        "{}",
        out.stdout
    );
    // The root collect sees k1's two leaves and runs.
    assert_eq!(out.op_summary("top")["succeeded"], 1);
    assert_eq!(out.op_summary("leaf")["succeeded"], 2);
    assert_eq!(
        out.finished()["empty_maps"],
        serde_json::json!([
            "leaf under inner[k0]: optional output `inner.result` produced no items"
        ])
    );
}

#[test]
fn outputs_must_name_a_dynamic_output_and_descriptions_show_in_plan() {
    let bad = TestJob::new(
        "name = \"b\"\n[ops.a]\ncomponent = \"{probe}\"\ndynamic = true\noutputs.files = { required = false }\n",
    );
    let out = crate::support::dynhost(bad.dir(), &["validate", "job.toml"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(
            "op `a`: `outputs.files` names no dynamic output of this op (it has: result)"
        ),
        "{}",
        out.stderr
    );
    let good = TestJob::new(&job(1, false));
    let plan = crate::support::dynhost(good.dir(), &["plan", "job.toml"]);
    plan.assert_code(0);
    assert!(
        plan.stdout.contains("op emit — lists the work"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("emits      result (optional: one item per unit of work)"),
        "{}",
        plan.stdout
    );
}

/// Issue 12 (`io_manager_key`): `values_dir` writes every value of the op as
/// a file, `DIR/OP/KEY` (or `DIR/OP` outside a map), also after a resume.
#[test]
fn values_dir_writes_each_value_as_a_file() {
    let text = |on_key: &str| {
        format!(
            r#"name = "files"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit_count = 3
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
values_dir = "out"
config.on_key = {{ {on_key} }}
outputs.size = {{ plain = true }}
config.set_outputs = {{ size = 5 }}
[ops.all]
component = "{{probe}}"
inputs.vs = {{ collect = "work", max_failures = 1 }}
values_dir = "out"
"#
        )
    };
    let job = TestJob::new(&text("k1 = \"fail\""));
    let out = job.run(&[]);
    out.assert_code(0);
    let dir = job.dir().join("out");
    assert!(dir.join("work/k0").is_file() && dir.join("work/k2").is_file());
    assert!(
        !dir.join("work/k1").exists(),
        "a failed step writes no file"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("work.size/k2")).unwrap(),
        "5",
        "a named plain output goes to DIR/OP.NAME/KEY"
    );
    let stored = crate::support::dynhost(job.dir(), &["show", "latest", "work[k2]", "--raw"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("work/k2")).unwrap(),
        stored.stdout
    );
    assert_eq!(
        std::fs::read(dir.join("all")).unwrap(),
        serde_json::to_vec(&out.output("all")).unwrap(),
        "an op outside any map writes DIR/OP"
    );
    // Fixed and resumed: the directory is whole.
    let run = out.finished()["run_id"].as_str().unwrap().to_owned();
    job.rewrite(&text(""));
    crate::support::dynhost(job.dir(), &["resume", &run]).assert_code(0);
    for key in ["k0", "k1", "k2"] {
        assert!(dir.join("work").join(key).is_file(), "{key}");
    }

    // A directory that cannot be written fails the steps, naming the file.
    let blocked = TestJob::new(&text(""));
    blocked.write("out", "a file, not a directory");
    let out = blocked.run(&[]);
    out.assert_code(1);
    let failure = &out.step("work[k0]")["failure"];
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("cannot write the value to `")
            && failure["message"].as_str().unwrap().contains("values_dir"),
        "{failure}"
    );
}
