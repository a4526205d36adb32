//! The run's report, built once at the end from the scheduler's state.

use super::RunOptions;
use super::coordinator::Coordinator;
use super::scheduler::{Scheduler, Status, StepId, step_label};
use crate::key::KeyPath;
use crate::plan::Plan;
use crate::report::{FinalOutput, OpSummary, RunReport, StepFailure};
use std::time::Instant;

/// Where a step stands in emission order: per level, the position of its key
/// among the items its emitter emitted.
fn emission_position(plan: &Plan, scheduler: &Scheduler<'_>, id: &StepId) -> Vec<usize> {
    let scope = &plan.ops[id.op].scope;
    (0..id.keys.len())
        .map(|level| {
            let Some(d) = scope.get(level) else {
                return usize::MAX;
            };
            let emitter = StepId::new(d.op, KeyPath::from(&id.keys[..level]));
            scheduler
                .steps
                .get(&emitter)
                .and_then(|e| e.items(&d.output))
                .and_then(|items| items.position(&id.keys[level]))
                .unwrap_or(usize::MAX)
        })
        .collect()
}

pub(crate) fn build_report(
    plan: &Plan,
    coordinator: &Coordinator<'_>,
    options: &RunOptions,
    started: Instant,
) -> RunReport {
    let scheduler = &coordinator.scheduler;
    let is_read: Vec<bool> = (0..plan.ops.len())
        .map(|id| {
            plan.ops
                .iter()
                .any(|op| op.inputs.iter().any(|i| reads(&i.source, id)))
        })
        .collect();
    let mut ops: Vec<OpSummary> = plan.ops.iter().map(|op| OpSummary::new(&op.name)).collect();
    // Count every step, but name and sort only those the report lists (last
    // ops' values, failures, skips): a million-key map is mostly counted.
    let mut listed: Vec<(StepId, &Status)> = Vec::new();
    for (slot, entry) in scheduler.steps.iter() {
        let op = entry.op();
        ops[op].steps += 1;
        match &entry.status {
            Status::Succeeded(_) if is_read[op] => ops[op].succeeded += 1,
            status => {
                if let Some(id) = scheduler.steps.id(slot) {
                    listed.push((id, status));
                }
            }
        }
    }
    // Per op in emission order, as a collect sees the values (not sorted by
    // key bytes, which puts `k_10` before `k_2`).
    listed
        .sort_by_cached_key(|(id, _)| (id.op, emission_position(plan, scheduler, id), id.clone()));
    let mut outputs = Vec::new();
    for (id, status) in &listed {
        let summary = &mut ops[id.op];
        let name = step_label(plan, id);
        let tolerated = scheduler.tolerated.contains(id);
        match status {
            Status::Succeeded(value) => {
                summary.succeeded += 1;
                let value = scheduler.values.get(value).unwrap_or_else(|e| {
                    tracing::error!("cannot read the output of {name} back from disk: {e}");
                    std::sync::Arc::from(Vec::new())
                });
                outputs.push(FinalOutput {
                    op: plan.ops[id.op].name.clone(),
                    step: name,
                    keys: id.keys.to_vec(),
                    value: value.to_vec(),
                });
            }
            Status::Failed(failure) => {
                if tolerated {
                    summary.tolerated += 1
                } else {
                    summary.failed += 1
                }
                summary.failures.push(StepFailure {
                    step: name,
                    failure: (**failure).clone(),
                    tolerated,
                });
            }
            Status::Skipped(reason) => {
                if tolerated {
                    summary.tolerated += 1
                } else if scheduler.optional_skipped.contains(id) {
                    summary.skipped_optional += 1
                } else {
                    summary.skipped += 1
                }
                summary.skips.push((name, reason.to_string()));
            }
            Status::Waiting | Status::Queued(_) | Status::Running(_) | Status::Backoff(_) => {}
        }
    }
    for (id, op) in ops.iter_mut().enumerate() {
        let totals = &coordinator.totals[id];
        op.retries = coordinator.retried[id];
        op.reused = coordinator.reuse.reused[id];
        op.changed = coordinator.reuse.changed[id];
        op.busy = totals.busy;
        op.peak_memory_bytes = totals.peak_memory_bytes;
        op.emitted_items = totals.emitted_items;
        op.emitted_bytes = totals.emitted_bytes;
        op.fuel_used = totals.fuel_used;
        op.http_requests = totals.http_requests;
        op.http_sent_bytes = totals.http_sent_bytes;
        op.http_received_bytes = totals.http_received_bytes;
        op.waited = totals.waited;
    }
    let mut vanished: Vec<String> = coordinator
        .reuse
        .unused()
        .filter(|step| !scheduler.steps.contains_key(step))
        .map(|step| step_label(plan, step))
        .collect();
    vanished.sort();
    let mut empty_maps: Vec<String> = scheduler
        .empty_maps
        .iter()
        .map(|(op, keys, reason)| {
            let under = StepId::new(plan.ops[*op].scope[keys.len()].op, keys.clone());
            format!(
                "{} under {}: {reason}",
                plan.ops[*op].name,
                step_label(plan, &under)
            )
        })
        .collect();
    empty_maps.sort();
    empty_maps.dedup();
    RunReport {
        run_id: options.run_id.clone(),
        job: plan.job_name.clone(),
        elapsed: started.elapsed(),
        ops,
        outputs,
        vanished,
        empty_maps,
        spilled_bytes: scheduler.values.spilled_bytes,
        interrupted: false,
    }
}

fn reads(source: &crate::plan::Source, id: usize) -> bool {
    source.op() == id
}
