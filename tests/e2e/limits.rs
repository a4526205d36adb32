//! Issue 10: every limit `validate` accepts can be reached, and a value over
//! a limit fails as `output-limit` naming it, never as a bare trap.

use crate::support::TestJob;
use std::time::Duration;

/// Values past wasmtime's default 128 MiB copy budget pass when the op's
/// limits allow them, and fail as `output-limit` when they do not.
#[test]
fn large_values_reach_the_configured_limits() {
    let job = TestJob::new(
        r#"name = "large"
[defaults]
memory_mib = 1024
timeout_secs = 120
[ops.emits_150]
component = "{probe}"
dynamic = true
config.on_key = { "*" = "emit_mib:150" }
limits = { max_value_bytes = 209715200, max_output_bytes = 314572800 }
[ops.emitted_size]
component = "{probe}"
inputs.v = { map = "emits_150" }
config.sizes_only = true
[ops.returns_150]
component = "{probe}"
config.on_key = { "*" = "return_mib:150" }
limits = { max_output_bytes = 209715200 }
[ops.returned_size]
component = "{probe}"
inputs.v = "returns_150"
config.sizes_only = true
[ops.returns_300]
component = "{probe}"
config.on_key = { "*" = "return_mib:300" }
[ops.emits_300]
component = "{probe}"
dynamic = true
config.on_key = { "*" = "emit_mib:300" }
limits = { max_value_bytes = 209715200 }
"#,
    );
    let out = job.run_within(Duration::from_secs(300), &["--no-store"]);
    out.assert_code(1);
    assert_eq!(
        out.output("emitted_size[big]")["inputs"]["v"],
        150 << 20,
        "the 150 MiB emitted value arrived whole"
    );
    assert_eq!(out.output("returned_size")["inputs"]["v"], 150 << 20);
    for step in ["returns_300", "emits_300"] {
        let failure = &out.step(step)["failure"];
        assert_eq!(failure["kind"], "output-limit", "{step}: {failure}");
        assert!(
            failure["message"]
                .as_str()
                .unwrap()
                .contains("max_output_bytes"),
            "{step}: {failure}"
        );
    }
}

/// Every `stack_kib` that `validate` accepts runs, and a stack overflow names
/// the job's real `stack_kib` and how to raise it. (With a stack larger than
/// the guest's own shadow stack in linear memory, 1 MiB for Rust, the guest
/// runs out of that first: a trap all the same.)
#[test]
fn every_accepted_stack_size_runs_and_overflow_names_it() {
    for kib in [256, 4096, 65536] {
        let job = TestJob::new(&format!(
            r#"name = "stack"
[defaults]
stack_kib = {kib}
[ops.fine]
component = "{{probe}}"
[ops.deep]
component = "{{probe}}"
config.on_key = {{ "*" = "recurse" }}
limits = {{ timeout_secs = 30 }}
"#
        ));
        let out = job.run_within(Duration::from_secs(120), &["--no-store"]);
        out.assert_code(1);
        assert_eq!(out.step("fine")["status"], "succeeded", "stack_kib {kib}");
        let failure = &out.step("deep")["failure"];
        assert_eq!(failure["kind"], "trap", "{failure}");
        let message = failure["message"].as_str().unwrap();
        if kib < 1024 {
            assert!(
                message.contains(&format!("stack of {kib} KiB"))
                    && message.contains("[defaults] stack_kib"),
                "{message}"
            );
        }
    }
}
