//! Deterministic merge of per-key results into one collected input.
//!
//! The ordering rule, stated once: **elements are in emission order**, level by
//! level: all elements under the first item the outer emitter emitted come
//! before those under its second item, and so on down to the innermost level.
//! The order in which steps *finish* never matters, so a collect is the same
//! on every run of a deterministic emitter, whatever the concurrency.

use super::scheduler::{Scheduler, StepId};
use super::values::Value;
use crate::key::{KeyPath, MappingKey, key_strings};
use crate::plan::{CollectTarget, DynOutput, Plan};
use crate::runtime::{InputData, OpFailure};

/// The full scope of what `target` refers to: for a mapped op its own scope,
/// for a dynamic output the emitter's scope plus that output.
pub(crate) fn target_scope(plan: &Plan, target: &CollectTarget) -> Vec<DynOutput> {
    match target {
        CollectTarget::Values(v) => plan.ops[v.op].scope.clone(),
        CollectTarget::Items(d) => {
            let mut scope = plan.ops[d.op].scope.clone();
            scope.push(d.clone());
            scope
        }
    }
}

/// Gathers `target` below the key path of `step`, in emission order.
pub(crate) fn gather(
    scheduler: &Scheduler<'_>,
    target: &CollectTarget,
    step: &StepId,
) -> Result<InputData, String> {
    let scope = target_scope(scheduler.plan(), target);
    let mut out = Gathered {
        items: Vec::new(),
        failed: Vec::new(),
    };
    walk(
        scheduler,
        target,
        &scope,
        step.keys.len(),
        &step.keys,
        &mut out,
    )?;
    Ok(InputData::Collected {
        items: out.items,
        failed: out.failed,
    })
}

struct Gathered {
    items: Vec<(Vec<String>, Vec<u8>)>,
    failed: Vec<(KeyPath, OpFailure)>,
}

fn walk(
    scheduler: &Scheduler<'_>,
    target: &CollectTarget,
    scope: &[DynOutput],
    base: usize,
    keys: &[MappingKey],
    out: &mut Gathered,
) -> Result<(), String> {
    let level = keys.len();
    let d = &scope[level];
    let emitter = StepId::new(d.op, KeyPath::from(keys));
    let Some(items) = scheduler
        .steps
        .get(&emitter)
        .and_then(|e| e.items(&d.output))
    else {
        return Ok(());
    };
    for (key, value) in &items.order {
        let mut next = KeyPath::from(keys);
        next.push(key.clone());
        if level + 1 < scope.len() {
            walk(scheduler, target, scope, base, &next, out)?;
            continue;
        }
        match target {
            CollectTarget::Items(_) => out
                .items
                .push((key_strings(&next[base..]), scheduler.bytes_vec(value)?)),
            CollectTarget::Values(v) => {
                let member = StepId::new(v.op, next);
                match scheduler.plain_value(&member, v.output) {
                    // No value (an optional result): absent, as in Dagster.
                    Some(Value::Nothing) => {}
                    Some(v) => out
                        .items
                        .push((key_strings(&member.keys[base..]), scheduler.bytes_vec(v)?)),
                    // Skipped because what it read produced nothing: absent too.
                    None if scheduler.optional_skipped.contains(&member) => {}
                    None => {
                        if let Some(failure) = scheduler.failure(&member) {
                            out.failed
                                .push((KeyPath::from(&member.keys[base..]), failure));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
