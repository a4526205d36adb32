//! Deterministic merge of per-key results into one collected input.
//!
//! The ordering rule, stated once: **elements are in emission order**, level by
//! level: all elements under the first item the outer emitter emitted come
//! before those under its second item, and so on down to the innermost level.
//! The order in which steps *finish* never matters, so a collect is the same
//! on every run of a deterministic emitter, whatever the concurrency.

use super::scheduler::{Scheduler, StepId};
use super::values::Value;
use crate::key::{KeyPath, MappingKey};
use crate::plan::{CollectTarget, DynOutput, Plan};
use crate::runtime::{CollectedItems, InputData, OpFailure};

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
        items: CollectedItems::new(),
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
    items: CollectedItems,
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
    if level + 1 == scope.len() {
        // Room for this emitter's elements at once (keys of the first's length).
        let key_bytes = items.order.first().map_or(0, |(k, _)| k.as_str().len());
        out.items.reserve(items.order.len(), key_bytes);
    }
    for (at, (key, value)) in items.order.iter().enumerate() {
        let mut next = KeyPath::from(keys);
        next.push(key.clone());
        if level + 1 < scope.len() {
            walk(scheduler, target, scope, base, &next, out)?;
            continue;
        }
        match target {
            CollectTarget::Items(_) => {
                scheduler.collect_into(&mut out.items, &next[base..], value)?
            }
            CollectTarget::Values(v) => {
                // Found by its item's position: a collect of millions of
                // members hashes none of their keys.
                let member = scheduler.child(items, at, v.op, next);
                match scheduler.plain_value(&member, v.output) {
                    // No value (an optional result): absent, as in Dagster.
                    Some(Value::Nothing) => {}
                    Some(v) => scheduler.collect_into(&mut out.items, &member.keys[base..], v)?,
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
