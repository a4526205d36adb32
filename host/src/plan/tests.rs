//! Unit tests for plan resolution: scopes and every graph-level error.

use super::*;
use crate::spec;

/// Parses `ops` (TOML after a `name` line) in a temp dir where every
/// `*.wasm` the job names exists.
fn build(ops: &str) -> Result<Plan, PlanError> {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), b"").unwrap();
    }
    let path = dir.path().join("job.toml");
    let spec = spec::parse(&path, &format!("name = \"t\"\n{ops}")).unwrap();
    Plan::build(&spec)
}

fn err(ops: &str) -> String {
    build(ops).unwrap_err().to_string()
}

fn scope_names(plan: &Plan, op: &str) -> Vec<String> {
    let op = &plan.ops[plan.op_id(op).unwrap()];
    op.scope
        .iter()
        .map(|d| format!("{}.{}", plan.ops[d.op].name, d.output))
        .collect()
}

const FAN: &str = r#"
[ops.files]
component = "a.wasm"
dynamic = true
"#;

#[test]
fn map_chain_and_collect_scopes() {
    let plan = build(&format!(
        r#"{FAN}
[ops.size]
component = "b.wasm"
inputs.path = {{ map = "files" }}
[ops.double]
component = "c.wasm"
inputs.size = {{ map = "size" }}
[ops.total]
component = "d.wasm"
inputs.all = {{ collect = "double" }}
"#
    ))
    .unwrap();
    assert_eq!(scope_names(&plan, "size"), ["files.result"]);
    assert_eq!(scope_names(&plan, "double"), ["files.result"]);
    assert!(scope_names(&plan, "total").is_empty());
    let order: Vec<&str> = plan.ops.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(order, ["files", "size", "double", "total"]);
}

#[test]
fn nested_fan_out_gets_two_levels() {
    let plan = build(&format!(
        r#"{FAN}
[ops.inner]
component = "b.wasm"
dynamic = true
inputs.f = {{ map = "files" }}
[ops.leaf]
component = "c.wasm"
inputs.x = {{ map = "inner" }}
[ops.per_outer]
component = "d.wasm"
inputs.f = {{ map = "files" }}
inputs.xs = {{ collect = "leaf" }}
[ops.everything]
component = "e.wasm"
inputs.xs = {{ collect = "leaf" }}
"#
    ))
    .unwrap();
    assert_eq!(scope_names(&plan, "leaf"), ["files.result", "inner.result"]);
    assert_eq!(scope_names(&plan, "per_outer"), ["files.result"]);
    assert!(scope_names(&plan, "everything").is_empty());
}

#[test]
fn graph_errors_name_file_op_and_fix() {
    let cases = [
        (
            "[ops.x]\ncomponent = \"a.wasm\"\ninputs.i = \"nope\"",
            "reads unknown op `nope`",
        ),
        (
            "[ops.x]\ncomponent = \"a.wasm\"\ndynamic = true\n[ops.y]\ncomponent = \"b.wasm\"\ninputs.i = { map = \"x.other\" }",
            "unknown output `x.other` (dynamic outputs there: `result`)",
        ),
        (
            "[ops.x]\ncomponent = \"a.wasm\"\ninputs.i = \"y\"\n[ops.y]\ncomponent = \"b.wasm\"\ninputs.i = \"x\"",
            "ops form a cycle: x -> y -> x",
        ),
        (
            "[ops.x]\ncomponent = \"a.wasm\"\n[ops.y]\ncomponent = \"b.wasm\"\ninputs.i = { map = \"x\" }",
            "cannot map over `x`: it has no dynamic output",
        ),
        (
            &format!(
                "{FAN}[ops.m]\ncomponent = \"b.wasm\"\ninputs.i = {{ map = \"files\" }}\n[ops.s]\ncomponent = \"c.wasm\"\ninputs.i = \"m\""
            ),
            "reads `m` plainly, but `m` runs once per key of `files.result`",
        ),
        ("[ops.x]\ncomponent = \"missing.wasm\"", "component `"),
        (
            "[ops.x]\ncomponent = \"a.wasm\"\ndynamic = [\"p\", \"q\"]\n[ops.y]\ncomponent = \"b.wasm\"\ninputs.i = { map = \"x\" }",
            "has several dynamic outputs; name one, e.g. `x.p`",
        ),
        (
            "[ops.x]\ncomponent = \"a.wasm\"\n[ops.y]\ncomponent = \"b.wasm\"\ninputs.i = { collect = \"x\" }",
            "cannot collect `x`",
        ),
        (
            "[ops.\"a b\"]\ncomponent = \"a.wasm\"",
            "op name `a b` must be",
        ),
    ];
    for (ops, expected) in cases {
        let message = err(ops);
        assert!(
            message.starts_with('`') && message.contains("job.toml`: "),
            "{message}"
        );
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn missing_component_hints_at_build() {
    let message = err("[ops.x]\ncomponent = \"missing.wasm\"\nbuild = \"make\"");
    assert!(
        message.contains("op `x`: component `") && message.contains("dynhost build"),
        "{message}"
    );
}

#[test]
fn two_different_fan_outs_cannot_be_zipped() {
    let message = err(&format!(
        "{FAN}[ops.other]\ncomponent = \"b.wasm\"\ndynamic = true\n[ops.z]\ncomponent = \"c.wasm\"\ninputs.a = {{ map = \"files\" }}\ninputs.b = {{ map = \"other\" }}"
    ));
    assert!(
        message.contains("one op can map over one fan-out"),
        "{message}"
    );
}

#[test]
fn named_plain_outputs_and_placement_tags_are_checked() {
    let both = err(r#"
[ops.a]
component = "a.wasm"
dynamic = ["x"]
outputs.x = { plain = true }
"#);
    assert!(
        both.contains("`outputs.x` is listed in `dynamic` and says `plain = true`"),
        "{both}"
    );
    let result = err(r#"
[ops.a]
component = "a.wasm"
outputs.result = { plain = true }
"#);
    assert!(
        result.contains("`outputs.result` cannot be plain"),
        "{result}"
    );
    let neither = err(r#"
[ops.a]
component = "a.wasm"
outputs.x = { required = false }
"#);
    assert!(
        neither.contains("or add `plain = true` for a named plain output"),
        "{neither}"
    );
    let tag = err(r#"
[ops.a]
component = "a.wasm"
placement = ["gpu eu"]
"#);
    assert!(tag.contains("placement tag name `gpu eu`"), "{tag}");
    let plan = build(
        r#"
[ops.a]
component = "a.wasm"
placement = ["eu", "gpu", "eu"]
outputs.size = { plain = true, required = false }
"#,
    )
    .unwrap();
    assert_eq!(plan.ops[0].placement, ["eu", "gpu"], "sorted, once each");
    assert_eq!(plan.ops[0].plain_outputs[0].name, "size");
    assert!(!plan.ops[0].plain_outputs[0].required);
}
