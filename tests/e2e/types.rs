//! Issue 12: typed values (Dagster's `dagster_type`): declared per output,
//! checked on the host for every item and result; edges checked by
//! `validate`.

use crate::support::{TestJob, dynhost};

fn job(output: &str, returns: &str, expects: &str) -> String {
    format!(
        r#"name = "typed"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{{ key = "a", value = 1 }}, {{ key = "b", value = "x" }}]
{output}
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
{returns}
{expects}
"#
    )
}

#[test]
fn items_and_results_are_checked_against_their_declared_types() {
    // Every item must be an integer: `b` is a string.
    let items = TestJob::new(&job(
        "outputs.result = { type = \"json\", schema = { type = \"integer\" } }",
        "",
        "",
    ));
    let out = items.run(&[]);
    out.assert_code(1);
    let failure = &out.step("emit")["failure"];
    assert_eq!(failure["kind"], "type-check", "{failure}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("op `emit` emitted a value on output `result` (key `b`) that does not match its schema at `/`"),
        "{message}"
    );
    // The item before it was emitted and ran.
    assert_eq!(out.step("work[a]")["status"], "succeeded");

    // Results: the probe returns an object with `op`; one without `missing`.
    let ok = TestJob::new(&job(
        "",
        "returns = { type = \"json\", schema = { type = \"object\", required = [\"op\"] } }",
        "",
    ));
    ok.run(&[]).assert_code(0);
    let bad = TestJob::new(&job(
        "",
        "returns = { schema = { type = \"object\", required = [\"missing\"] } }",
        "",
    ));
    let out = bad.run(&[]);
    out.assert_code(1);
    let failure = &out.step("work[a]")["failure"];
    assert_eq!(failure["kind"], "type-check", "{failure}");
    assert!(
        failure["message"].as_str().unwrap().contains("op `work` returned a value that does not match its schema at `/`: \"missing\" is a required property"),
        "{failure}"
    );
}

#[test]
fn validate_refuses_edges_whose_declared_types_disagree() {
    let mismatch = TestJob::new(&job(
        "outputs.result = { type = \"utf8\" }",
        "",
        "expects = { v = \"json\" }",
    ));
    let out = dynhost(mismatch.dir(), &["validate", "job.toml"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(
            "op `work`: input `v` expects `json` but output `emit.result` is declared `utf8`"
        ),
        "{}",
        out.stderr
    );
    let agree = TestJob::new(&job(
        "outputs.result = { type = \"json\" }",
        "",
        "expects = { v = \"utf8\" }",
    ));
    dynhost(agree.dir(), &["validate", "job.toml"]).assert_code(0);
    let unknown = TestJob::new(&job("outputs.result = { type = \"xml\" }", "", ""));
    let out = dynhost(unknown.dir(), &["validate", "job.toml"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("`outputs.result`: type `xml` is not one of `bytes`, `utf8`, `json`"),
        "{}",
        out.stderr
    );
}
