//! `dynhost plan JOB`: the resolved plan for people (ops in run order, what
//! each runs once per, its inputs, outputs, limits and grants); `--json` is
//! the machine form.

use dynhost::Plan;
use dynhost::plan::{CollectTarget, DynOutput, PlannedOp, Source};
use dynhost::runtime::types::ValueKind;
use std::fmt::Write as _;
use std::io::Write;

/// Writes the plan as text to stdout.
pub fn print(plan: &Plan) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "job `{}` ({}): {} ops, in run order",
        plan.job_name,
        plan.job_file.display(),
        plan.ops.len()
    )?;
    for op in &plan.ops {
        writeln!(out)?;
        for line in describe(plan, op) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

fn output_name(plan: &Plan, d: &DynOutput) -> String {
    format!("`{}.{}`", plan.ops[d.op].name, d.output)
}

fn describe(plan: &Plan, op: &PlannedOp) -> Vec<String> {
    let mut lines = vec![match &op.description {
        Some(description) => format!("op {} — {description}", op.name),
        None => format!("op {}", op.name),
    }];
    let runs = if op.scope.is_empty() {
        "once".to_owned()
    } else {
        let levels: Vec<String> = op.scope.iter().map(|d| output_name(plan, d)).collect();
        format!("once per key of {}", levels.join(" > "))
    };
    lines.push(format!("  runs       {runs}"));
    for input in &op.inputs {
        let from = match &input.source {
            Source::Value(v) => format!("the value of `{}`", v.label(plan)),
            Source::Item(d) => format!("the item of {}", output_name(plan, d)),
            Source::Collect(target, tolerance) => {
                let what = match target {
                    CollectTarget::Values(v) => format!("every value of `{}`", v.label(plan)),
                    CollectTarget::Items(d) => format!("every item of {}", output_name(plan, d)),
                };
                let mut text = format!("{what}, as one list");
                if let Some(n) = tolerance.max_failures {
                    let _ = write!(text, " (tolerates {n} failed)");
                }
                if let Some(f) = tolerance.min_success {
                    let _ = write!(text, " (needs {:.0}% to succeed)", f * 100.0);
                }
                text
            }
        };
        lines.push(format!("  input      {} = {from}", input.name));
    }
    if !op.dynamic_outputs.is_empty() {
        let outputs: Vec<String> = op
            .dynamic_outputs
            .iter()
            .zip(&op.required_outputs)
            .zip(&op.output_descriptions)
            .map(|((name, required), description)| {
                let mut notes = Vec::new();
                if !required {
                    notes.push("optional".to_owned());
                }
                if let Some(d) = description {
                    notes.push(d.clone());
                }
                if notes.is_empty() {
                    name.clone()
                } else {
                    format!("{name} ({})", notes.join(": "))
                }
            })
            .collect();
        lines.push(format!("  emits      {}", outputs.join(", ")));
    }
    if !op.plain_outputs.is_empty() {
        let outputs: Vec<String> = op
            .plain_outputs
            .iter()
            .zip(&op.policy.plain_output_types)
            .map(|(output, value_type)| {
                let mut notes = Vec::new();
                if value_type.kind != ValueKind::Any {
                    notes.push(value_type.kind.as_str().to_owned());
                }
                if !output.required {
                    notes.push("optional".to_owned());
                }
                if let Some(d) = &output.description {
                    notes.push(d.clone());
                }
                if notes.is_empty() {
                    output.name.clone()
                } else {
                    format!("{} ({})", output.name, notes.join(": "))
                }
            })
            .collect();
        lines.push(format!("  outputs    {}", outputs.join(", ")));
    }
    let result = &op.policy.result_type;
    if !op.policy.result_required || result.kind != ValueKind::Any {
        let mut notes = Vec::new();
        if result.kind != ValueKind::Any {
            notes.push(result.kind.as_str().to_owned());
        }
        if !op.policy.result_required {
            notes.push("optional: may return no value, which skips its readers".to_owned());
        }
        lines.push(format!("  returns    {}", notes.join(", ")));
    }
    let l = &op.policy.limits;
    let mut limits = format!(
        "memory {} MiB, timeout {}s, {} emits, value {} MiB, output {} MiB",
        l.memory_bytes >> 20,
        l.timeout.as_secs_f64(),
        l.max_emits,
        l.max_value_bytes >> 20,
        l.max_output_bytes >> 20
    );
    if let Some(fuel) = l.fuel {
        let _ = write!(limits, ", fuel {fuel}");
    }
    lines.push(format!("  limits     {limits}"));
    if op.retry.max_retries > 0 {
        lines.push(format!(
            "  retries    {} (first after {:.1}s, on {})",
            op.retry.max_retries,
            op.retry.backoff.as_secs_f64(),
            op.retry
                .retry_on
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for mount in &op.policy.mounts {
        lines.push(format!(
            "  mount      {} <- {} ({}{})",
            mount.guest,
            mount.host.display(),
            if mount.writable {
                "read-write"
            } else {
                "read-only"
            },
            if mount.shared {
                ", shared: same path on every worker"
            } else {
                ""
            }
        ));
    }
    if !op.policy.env.is_empty() {
        let names: Vec<&str> = op.policy.env.iter().map(|(k, _)| k.as_str()).collect();
        lines.push(format!("  env        {}", names.join(", ")));
    }
    if op.cache {
        lines.push("  cache      reuses stored results of any run".to_owned());
    }
    if !op.placement.is_empty() {
        lines.push(format!(
            "  placement  workers tagged {} (run --nats)",
            op.placement.join(", ")
        ));
    }
    lines.push(format!("  component  {}", op.component.display()));
    lines
}
