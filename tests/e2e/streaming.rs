//! Streaming and scale (issue 4): mapped keys start while the emitter still
//! emits, chained maps pipeline per key, and values past the memory budget go
//! to disk without changing any result.

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

#[test]
fn values_past_the_memory_budget_are_spilled_and_read_back_unchanged() {
    let long = |c: char| c.to_string().repeat(40);
    let job = TestJob::new(&format!(
        r#"name = "spill"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{{ key = "a", value = "{a}" }}, {{ key = "b", value = "{b}" }}, {{ key = "c", value = "{c}" }}]
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
[ops.next]
component = "{{probe}}"
inputs.w = {{ map = "work" }}
[ops.all]
component = "{{probe}}"
inputs.ns = {{ collect = "next" }}
"#,
        a = long('a'),
        b = long('b'),
        c = long('c'),
    ));
    let in_memory = job.run(&["--no-store"]);
    in_memory.assert_code(0);
    let spilled = job.run(&["--no-store", "--memory-budget-mib", "0"]);
    spilled.assert_code(0);
    assert_eq!(in_memory.finished()["spilled_bytes"], 0);
    // Three 42-byte items, three `work` and three `next` results went to disk.
    let bytes = spilled.finished()["spilled_bytes"].as_u64().unwrap();
    assert!(bytes > 3 * 42 + 6 * 40, "spilled only {bytes} bytes");
    let collected = |out: &crate::support::CliOutput| out.output("all")["inputs"]["ns"].clone();
    assert_eq!(collected(&spilled), collected(&in_memory));
    assert_eq!(
        collected(&spilled)["items"][1][1]["inputs"]["w"]["inputs"]["v"],
        long('b'),
        "an item read back from disk reached the chained map intact"
    );
}

/// Time the host holds an emitter back (its outbox full, waiting for the
/// coordinator) is the host's, not the op's: it is added to the step's time
/// limit. A sink that holds each of 30 items back for 50 ms (1.5 s in all)
/// and says so lets a step with a 1 s limit finish; one that holds them
/// back as long without saying so fails it as `timeout`.
#[test]
fn time_the_host_holds_an_emitter_back_is_not_counted_against_its_limit() {
    use dynhost::runtime::{EmitSink, StepCall};
    use std::time::Duration;
    struct Slow {
        says: bool,
    }
    impl EmitSink for Slow {
        fn emit(
            &mut self,
            _output: usize,
            _key: dynhost::MappingKey,
            _value: Vec<u8>,
            _metadata: Option<Box<str>>,
        ) -> Duration {
            let held = Duration::from_millis(50);
            std::thread::sleep(held);
            if self.says { held } else { Duration::ZERO }
        }
    }
    let emits: Vec<String> = (0..30)
        .map(|i| format!("{{ key = \"k{i}\", value = {i} }}"))
        .collect();
    let job = TestJob::new(&format!(
        "name = \"held\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\nlimits.timeout_secs = 1\nconfig.emit = [{}]\n",
        emits.join(", ")
    ));
    let plan = dynhost::load_plan(&job.dir().join("job.toml")).expect("plan");
    let runtime = dynhost::Runtime::new(&dynhost::RuntimeConfig {
        max_instances: 1,
        max_memory_bytes: plan.max_memory_bytes(),
        cache_dir: Some(crate::support::root().join("target/dynhost-test-cache")),
        max_wasm_stack_bytes: plan.stack_bytes(),
        enable_fuel: false,
        fast_compile: false,
    })
    .expect("runtime");
    let op = &plan.ops[0];
    let component = runtime.load(&op.component).expect("component");
    let name: std::sync::Arc<str> = std::sync::Arc::from(op.name.as_str());
    let run = |says: bool| {
        let call = StepCall {
            run_id: "held",
            op: &name,
            keys: &[],
            config_json: &op.config_json,
            input_names: &[],
        };
        runtime.run_step(
            &component,
            &op.policy,
            &call,
            std::iter::empty(),
            Box::new(Slow { says }),
        )
    };
    let honest = run(true);
    assert!(honest.outcome.is_ok(), "{:?}", honest.outcome);
    assert_eq!(honest.stats.emitted_items, 30);
    let silent = run(false);
    assert_eq!(
        silent.outcome.expect_err("a timeout").kind,
        dynhost::FailureKind::Timeout
    );
}
