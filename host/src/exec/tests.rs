//! The coordinator and scheduler driven through the transport seam by a
//! scripted transport, without wasm: the fan-out shapes, and events that
//! arrive late, twice or out of order (as they may from remote workers).

use super::coordinator::Coordinator;
use super::scheduler::{Status, StepId};
use super::transport::{Events, StepEvent, StepRequest, Transport, Woke};
use super::worker::Emitted;
use super::{RunOptions, Storage};
use crate::key::MappingKey;
use crate::plan::Plan;
use crate::runtime::{FailureKind, InputData, OpFailure, StepReport, StepStats};
use std::time::Duration;

/// How the scripted transport delivers each step's events.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// Items in order, then the end: what the thread pool does.
    Sequential,
    /// The end first, then the items last to first.
    Reversed,
    /// Every event twice.
    Twice,
}

/// What a step of op `name` at `keys` with `inputs` does.
type Script<'a> = &'a dyn Fn(&str, &[MappingKey], &[InputData]) -> Act;

/// What one step does: items to emit (key, value) and its outcome.
struct Act {
    items: Vec<(String, Vec<u8>)>,
    outcome: Result<Vec<u8>, String>,
}

/// Runs every submitted step at once by `script`, delivering its events in
/// `order`, and remembers each request.
struct Scripted<'a> {
    plan: &'a Plan,
    script: Script<'a>,
    order: Order,
    pending: Vec<StepEvent>,
    requests: Vec<(StepId, u32, Vec<InputData>)>,
}

impl Transport for Scripted<'_> {
    fn capacity(&self, _ready: usize) -> usize {
        1000
    }

    fn submit(&mut self, steps: Vec<StepRequest>) {
        for request in steps {
            let op = &self.plan.ops[request.step.op].name;
            let act = (self.script)(op, &request.step.keys, &request.inputs);
            let mut events: Vec<StepEvent> = act
                .items
                .iter()
                .enumerate()
                .map(|(seq, (key, value))| StepEvent::Item {
                    attempt: request.attempt,
                    seq: seq as u64,
                    item: Emitted {
                        step: request.step.clone(),
                        output: 0,
                        key: MappingKey::parse(key).unwrap(),
                        value: value.clone(),
                        metadata: None,
                    },
                })
                .collect();
            let report = StepReport {
                stats: StepStats {
                    emitted_items: act.items.len() as u64,
                    ..StepStats::default()
                },
                ..match act.outcome {
                    Ok(bytes) => StepReport {
                        outcome: Ok(bytes),
                        ..StepReport::failed(OpFailure::new(FailureKind::Host, ""))
                    },
                    Err(message) => {
                        StepReport::failed(OpFailure::new(FailureKind::OpError, message))
                    }
                }
            };
            events.push(StepEvent::Finished {
                step: request.step.clone(),
                attempt: request.attempt,
                report: Box::new(report),
            });
            match self.order {
                Order::Sequential => self.pending.extend(events),
                Order::Reversed => self.pending.extend(events.into_iter().rev()),
                Order::Twice => {
                    for event in events {
                        self.pending.push(copy(&event));
                        self.pending.push(event);
                    }
                }
            }
            self.requests.push((
                request.step,
                request.attempt,
                request.inputs.into_iter().collect(),
            ));
        }
    }

    fn wait(&mut self, _timeout: Duration, events: &mut Events) -> Woke {
        for event in self.pending.drain(..) {
            events.push(event);
        }
        Woke::Looked
    }

    fn stop(&mut self) -> usize {
        0
    }
}

fn copy(event: &StepEvent) -> StepEvent {
    match event {
        StepEvent::Item { attempt, seq, item } => StepEvent::Item {
            attempt: *attempt,
            seq: *seq,
            item: item.clone(),
        },
        StepEvent::Finished {
            step,
            attempt,
            report,
        } => StepEvent::Finished {
            step: step.clone(),
            attempt: *attempt,
            report: report.clone(),
        },
    }
}

/// A plan of `ops` (TOML `[ops.*]` tables) whose component is an empty file.
pub(crate) fn plan(ops: &str) -> (tempfile::TempDir, Plan) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("op.wasm"), b"").unwrap();
    let path = dir.path().join("job.toml");
    let spec = crate::spec::parse(&path, &format!("name = \"t\"\n{ops}")).unwrap();
    let plan = Plan::build(&spec).unwrap();
    (dir, plan)
}

/// What a finished run left: each step's status as `op[k]` -> text, and the
/// requests in the order they were made.
struct Outcome {
    statuses: Vec<(String, String)>,
    requests: Vec<(StepId, u32, Vec<InputData>)>,
}

impl Outcome {
    fn status(&self, step: &str) -> &str {
        self.statuses
            .iter()
            .find(|(s, _)| s == step)
            .map_or("absent", |(_, status)| status.as_str())
    }

    /// The keys of the collected items a step was given for its input `i`.
    fn collected(&self, plan: &Plan, step: &str, i: usize) -> Vec<String> {
        let (_, _, inputs) = self
            .requests
            .iter()
            .find(|(id, _, _)| super::scheduler::step_label(plan, id) == step)
            .unwrap_or_else(|| panic!("{step} never ran"));
        match &inputs[i] {
            InputData::Collected { items, .. } => items
                .iter()
                .map(|(keys, _)| keys.iter().collect::<Vec<_>>().join("/"))
                .collect(),
            InputData::Single(_) => panic!("{step}: input {i} is not collected"),
        }
    }

    fn runs_of(&self, plan: &Plan, step: &str) -> usize {
        self.requests
            .iter()
            .filter(|(id, _, _)| super::scheduler::step_label(plan, id) == step)
            .count()
    }
}

fn run(plan: &Plan, order: Order, script: Script<'_>) -> Outcome {
    let options = RunOptions {
        run_id: "t".into(),
        max_concurrent: 2,
        memory_budget_bytes: 1 << 20,
        interrupt: None,
        shared_limits: None,
    };
    let hashes = vec!["h"; plan.ops.len()];
    let mut coordinator = Coordinator::new(plan, &hashes, &options, Storage::default());
    let mut transport = Scripted {
        plan,
        script,
        order,
        pending: Vec::new(),
        requests: Vec::new(),
    };
    coordinator.drive(&mut transport, &mut |_| {});
    coordinator.scheduler.skip_stranded();
    let mut statuses: Vec<(String, String)> = coordinator
        .scheduler
        .steps
        .iter()
        .map(|(slot, entry)| {
            let id = coordinator.scheduler.steps.id(slot).unwrap();
            let status = match &entry.status {
                Status::Succeeded(_) => "succeeded".to_owned(),
                Status::Failed(f) => format!("failed: {}", f.message),
                Status::Skipped(reason) => format!("skipped: {reason}"),
                Status::Waiting | Status::Queued(_) | Status::Running(_) | Status::Backoff(_) => {
                    "unfinished".to_owned()
                }
            };
            (super::scheduler::step_label(plan, &id), status)
        })
        .collect();
    statuses.sort();
    Outcome {
        statuses,
        requests: transport.requests,
    }
}

const ORDERS: [Order; 3] = [Order::Sequential, Order::Reversed, Order::Twice];

fn items(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
    keys.iter()
        .map(|k| ((*k).to_owned(), k.as_bytes().to_vec()))
        .collect()
}

fn ok(items: Vec<(String, Vec<u8>)>) -> Act {
    Act {
        items,
        outcome: Ok(b"v".to_vec()),
    }
}

#[test]
fn chained_maps_and_their_collect_whatever_the_event_order() {
    let (_dir, plan) = plan(
        r#"
[ops.emit]
component = "op.wasm"
dynamic = true
[ops.a]
component = "op.wasm"
inputs.v = { map = "emit" }
[ops.b]
component = "op.wasm"
inputs.v = { map = "a" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "b" }
"#,
    );
    for order in ORDERS {
        let out = run(&plan, order, &|op, _, _| match op {
            "emit" => ok(items(&["z", "m", "a"])),
            _ => ok(Vec::new()),
        });
        for step in ["a[z]", "a[m]", "a[a]", "b[z]", "b[m]", "b[a]", "all"] {
            assert_eq!(out.status(step), "succeeded", "{step}");
            assert_eq!(out.runs_of(&plan, step), 1, "{step} ran once");
        }
        assert_eq!(
            out.collected(&plan, "all", 0),
            ["z", "m", "a"],
            "emission order"
        );
    }
}

#[test]
fn nested_collect_gathers_both_levels_in_emission_order() {
    let (_dir, plan) = plan(
        r#"
[ops.outer]
component = "op.wasm"
dynamic = true
[ops.inner]
component = "op.wasm"
dynamic = true
inputs.v = { map = "outer" }
[ops.work]
component = "op.wasm"
inputs.v = { map = "inner" }
[ops.per_outer]
component = "op.wasm"
inputs.o = { map = "outer" }
inputs.vs = { collect = "work" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work" }
"#,
    );
    for order in ORDERS {
        let out = run(&plan, order, &|op, keys, _| match (op, keys.len()) {
            ("outer", _) => ok(items(&["x", "y"])),
            ("inner", _) if keys[0].as_str() == "x" => ok(items(&["2", "1"])),
            ("inner", _) => ok(items(&["3"])),
            _ => ok(Vec::new()),
        });
        assert_eq!(out.collected(&plan, "all", 0), ["x/2", "x/1", "y/3"]);
        assert_eq!(out.collected(&plan, "per_outer[x]", 1), ["2", "1"]);
        assert_eq!(out.status("per_outer[y]"), "succeeded");
    }
}

#[test]
fn zero_items_give_an_empty_collect() {
    let (_dir, plan) = plan(
        r#"
[ops.emit]
component = "op.wasm"
dynamic = true
[ops.work]
component = "op.wasm"
inputs.v = { map = "emit" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work" }
"#,
    );
    for order in ORDERS {
        let out = run(&plan, order, &|_, _, _| ok(Vec::new()));
        assert_eq!(out.status("all"), "succeeded");
        assert!(out.collected(&plan, "all", 0).is_empty());
        assert_eq!(
            out.statuses.len(),
            2,
            "emit and all only: {:?}",
            out.statuses
        );
    }
}

#[test]
fn an_emitter_failing_after_streaming_runs_its_items_but_not_the_collect() {
    let (_dir, plan) = plan(
        r#"
[ops.emit]
component = "op.wasm"
dynamic = true
[ops.work]
component = "op.wasm"
inputs.v = { map = "emit" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work" }
"#,
    );
    for order in ORDERS {
        let out = run(&plan, order, &|op, _, _| match op {
            "emit" => Act {
                items: items(&["a", "b"]),
                outcome: Err("broke after two".into()),
            },
            _ => ok(Vec::new()),
        });
        assert_eq!(out.status("emit"), "failed: broke after two");
        assert_eq!(out.status("work[a]"), "succeeded");
        assert_eq!(out.status("work[b]"), "succeeded");
        assert!(
            out.status("all").starts_with("skipped"),
            "{}",
            out.status("all")
        );
    }
}

#[test]
fn a_tolerant_collect_runs_without_failed_keys_within_its_tolerance() {
    let job = |max: u32| {
        format!(
            r#"
[ops.emit]
component = "op.wasm"
dynamic = true
[ops.work]
component = "op.wasm"
inputs.v = {{ map = "emit" }}
[ops.all]
component = "op.wasm"
inputs.vs = {{ collect = "work", max_failures = {max} }}
"#
        )
    };
    let script = |op: &str, keys: &[MappingKey], _: &[InputData]| match op {
        "emit" => ok(items(&["a", "b", "c"])),
        "work" if keys[0].as_str() == "b" => Act {
            items: Vec::new(),
            outcome: Err("no".into()),
        },
        _ => ok(Vec::new()),
    };
    for order in ORDERS {
        let (_dir, tolerant) = plan(&job(1));
        let out = run(&tolerant, order, &script);
        assert_eq!(out.status("all"), "succeeded");
        assert_eq!(out.collected(&tolerant, "all", 0), ["a", "c"]);
        let (_dir, strict) = plan(&job(0));
        let out = run(&strict, order, &script);
        assert!(
            out.status("all").starts_with("skipped"),
            "{}",
            out.status("all")
        );
    }
}

#[test]
fn a_retried_step_ignores_its_earlier_attempts_late_and_duplicate_events() {
    let (_dir, plan) = plan(
        r#"
[ops.emit]
component = "op.wasm"
dynamic = true
[ops.work]
component = "op.wasm"
inputs.v = { map = "emit" }
retries = 2
retry_backoff_secs = 0
retry_on = ["op-error"]
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work" }
"#,
    );
    for order in ORDERS {
        let tries = std::cell::RefCell::new(std::collections::HashMap::<String, u32>::new());
        let out = run(&plan, order, &|op, keys, _| {
            if op == "emit" {
                return ok(items(&["a", "b"]));
            }
            if op != "work" {
                return ok(Vec::new());
            }
            let mut tries = tries.borrow_mut();
            let n = tries.entry(keys[0].to_string()).or_insert(0);
            *n += 1;
            if keys[0].as_str() == "a" && *n == 1 {
                Act {
                    items: Vec::new(),
                    outcome: Err("flaky".into()),
                }
            } else {
                ok(Vec::new())
            }
        });
        assert_eq!(out.status("work[a]"), "succeeded");
        let attempts: Vec<u32> = out
            .requests
            .iter()
            .filter(|(id, _, _)| super::scheduler::step_label(&plan, id) == "work[a]")
            .map(|(_, attempt, _)| *attempt)
            .collect();
        assert_eq!(attempts, [1, 2], "one retry, whatever came twice");
        assert_eq!(out.runs_of(&plan, "work[b]"), 1);
        assert_eq!(out.collected(&plan, "all", 0), ["a", "b"]);
    }
}
