//! The CLI around a run: build commands, the plain summary, plan output.

use crate::support::{TestJob, dynhost, probe};

#[test]
fn run_build_runs_the_build_command_first() {
    let job = TestJob::new(&format!(
        "name = \"built\"\n[ops.a]\ncomponent = \"out/a.wasm\"\nbuild = \"mkdir -p out && cp '{}' out/a.wasm\"\n",
        probe()
    ));
    // Without the build the component is missing: a bad-input error.
    let missing = dynhost(job.dir(), &["run", "job.toml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("component `out/a.wasm` not found"),
        "{}",
        missing.stderr
    );
    let out = job.run(&["--build"]);
    out.assert_code(0);
    assert_eq!(out.output("a")["op"], "a");
    assert!(
        out.stderr.contains("building `a`: mkdir -p out"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failing_build_is_a_bad_input_error() {
    let job =
        TestJob::new("name = \"broken\"\n[ops.a]\ncomponent = \"a.wasm\"\nbuild = \"exit 3\"\n");
    let out = dynhost(job.dir(), &["build", "job.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "error: `job.toml`: op `a`: build command `exit 3` failed with exit status: 3"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn the_plain_summary_lists_ops_and_failed_keys() {
    let job = TestJob::new(
        r#"name = "summary"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "good", value = 1 }, { key = "bad", value = 2 }]
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { bad = "fail" }
"#,
    );
    let out = dynhost(job.dir(), &["run", "job.toml"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("job `summary` FAILED"),
        "{}",
        out.stderr
    );
    let row = out
        .stderr
        .lines()
        .find(|l| l.starts_with("work "))
        .expect("a row for `work`");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["work", "2", "1", "1", "0"],
        "keys, ok, failed, skipped: {row}"
    );
    assert!(
        out.stderr
            .contains("  work[bad] failed (op-error): probe was told to fail"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.starts_with("work[good] = {"), "{}", out.stdout);
}

#[test]
fn plan_prints_the_resolved_scopes() {
    let job = TestJob::new(
        "name = \"p\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\n[ops.work]\ncomponent = \"{probe}\"\ninputs.v = { map = \"emit\" }\n",
    );
    // For people: ops in run order, what each runs once per, its inputs.
    let text = dynhost(job.dir(), &["plan", "job.toml"]);
    text.assert_code(0);
    assert!(
        text.stdout
            .starts_with("job `p` (job.toml): 2 ops, in run order"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("op work\n  runs       once per key of `emit.result`\n  input      v = the item of `emit.result`"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("  limits     memory "),
        "{}",
        text.stdout
    );
    // For tools: `--json`.
    let out = dynhost(job.dir(), &["plan", "--json", "job.toml"]);
    out.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["ops"][1]["name"], "work");
    assert_eq!(
        plan["ops"][1]["scope"],
        serde_json::json!([{ "op": 0, "output": "result" }])
    );
}

/// Issue 11: a component being compiled is named (a large one takes seconds);
/// one from the compile cache is not.
#[test]
fn compiling_a_component_says_so_once() {
    let job = TestJob::new("name = \"c\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\n");
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let mut command = crate::support::command(job.dir(), &["run", "job.toml"]);
        command.env("DYNHOST_CACHE_DIR", cache.path().join("c"));
        crate::support::output(command)
    };
    let first = run();
    first.assert_code(0);
    assert!(
        first.stderr.contains("compiling probe.wasm (") && first.stderr.contains("cached)…"),
        "{}",
        first.stderr
    );
    let second = run();
    second.assert_code(0);
    assert!(!second.stderr.contains("compiling"), "{}", second.stderr);
}
