//! Resolution of one op's inputs into sources and a scope, and of its mounts,
//! environment and limits into a [`SandboxPolicy`].

use super::{
    CollectTarget, DEFAULT_RETRY_BACKOFF, DynOutput, OpId, PlanError, PlannedInput, PlannedOp,
    Resolver, RetryPolicy, Source, ValueRef, split_reference,
};
use crate::runtime::types::ValueType;
use crate::runtime::{FailureKind, Mount, OutboundHost, SandboxPolicy};
use crate::spec::{InputSpec, OpSpec, Tolerance};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn tolerance(spec: &InputSpec) -> Tolerance {
    match spec {
        InputSpec::Collect(_, tolerance) => *tolerance,
        _ => Tolerance::default(),
    }
}

/// `op` or `op.NAME` for a value read from `ops` (the plan being built).
fn label(v: &ValueRef, ops: &[PlannedOp]) -> String {
    let op = &ops[v.op];
    match v.output {
        None => op.name.clone(),
        Some(i) => format!("{}.{}", op.name, op.plain_outputs[i].name),
    }
}

fn is_prefix(short: &[DynOutput], long: &[DynOutput]) -> bool {
    short.len() <= long.len() && long[..short.len()] == *short
}

impl Resolver<'_> {
    /// Resolves the inputs of `name`, whose upstream ops are already in `ops`.
    ///
    /// The op's scope is the deepest scope among its `map` inputs (or none);
    /// plain inputs must come from that scope or an enclosing one, and
    /// collects must gather from strictly deeper.
    pub(super) fn resolve_inputs(
        &self,
        name: &str,
        op: &OpSpec,
        id_of: &BTreeMap<&str, OpId>,
        ops: &[PlannedOp],
    ) -> Result<(Vec<DynOutput>, Vec<PlannedInput>), PlanError> {
        let mut resolved: Vec<(PlannedInput, Vec<DynOutput>)> = Vec::new();
        for (input, spec) in &op.inputs {
            let text = spec.reference();
            let reference = split_reference(text);
            let id = id_of[reference.op];
            let up = &ops[id];
            let dyn_out = |output: &str| DynOutput {
                op: id,
                output: output.to_owned(),
            };
            let only_output = || match up.dynamic_outputs.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(self.bad_input(
                    name,
                    input,
                    format!(
                        "`{}` has several dynamic outputs; name one, e.g. `{}.{}`",
                        up.name, up.name, up.dynamic_outputs[0]
                    ),
                )),
            };
            let item_scope = |output: &DynOutput| {
                let mut scope = up.scope.clone();
                scope.push(output.clone());
                scope
            };
            // `op.NAME` where NAME is a named plain output: read like the
            // result, per key of the op's own scope.
            let plain = reference
                .output
                .and_then(|o| up.plain_outputs.iter().position(|p| p.name == o))
                .map(|i| ValueRef {
                    op: id,
                    output: Some(i),
                });
            if let Some(value) = plain {
                let source = match spec {
                    InputSpec::Plain(_) => Source::Value(value),
                    InputSpec::Map(_) if !up.scope.is_empty() => Source::Value(value),
                    InputSpec::Map(_) => {
                        return Err(self.bad_input(name, input, format!(
                            "cannot map over `{text}`: it is a plain output of `{}`, which is not mapped; read it plainly with \"{text}\"",
                            up.name
                        )));
                    }
                    InputSpec::Collect(..) if !up.scope.is_empty() => {
                        Source::Collect(CollectTarget::Values(value), tolerance(spec))
                    }
                    InputSpec::Collect(..) => {
                        return Err(self.bad_input(name, input, format!(
                            "cannot collect `{text}`: `{}` is not mapped, so it has one value; read it plainly with \"{text}\"",
                            up.name
                        )));
                    }
                };
                resolved.push((
                    PlannedInput {
                        name: input.clone(),
                        source,
                    },
                    up.scope.clone(),
                ));
                continue;
            }
            let (source, scope) = match (spec, reference.output) {
                (InputSpec::Plain(_), Some(output)) => {
                    return Err(self.bad_input(name, input, format!(
                        "`{text}` is a dynamic output; use {{ map = \"{text}\" }} to run once per item or {{ collect = \"{text}\" }} to gather them (output `{output}`)"
                    )));
                }
                (InputSpec::Plain(_), None) => {
                    (Source::Value(ValueRef::result(id)), up.scope.clone())
                }
                (InputSpec::Map(_), Some(output)) => {
                    let d = dyn_out(output);
                    let scope = item_scope(&d);
                    (Source::Item(d), scope)
                }
                // `map = "x"`: over x's items when x is dynamic (nesting, if x is
                // itself mapped); else a chained map over x's per-key values.
                (InputSpec::Map(_), None) if !up.dynamic_outputs.is_empty() => {
                    let d = dyn_out(&only_output()?);
                    let scope = item_scope(&d);
                    (Source::Item(d), scope)
                }
                (InputSpec::Map(_), None) if !up.scope.is_empty() => {
                    (Source::Value(ValueRef::result(id)), up.scope.clone())
                }
                (InputSpec::Map(_), None) => {
                    return Err(self.bad_input(name, input, format!(
                        "cannot map over `{}`: it has no dynamic output and is not mapped; declare `dynamic = true` on `{}` and emit items, or read it plainly with `{}`",
                        up.name, up.name, up.name
                    )));
                }
                (InputSpec::Collect(..), Some(output)) => {
                    let d = dyn_out(output);
                    let scope = item_scope(&d);
                    (
                        Source::Collect(CollectTarget::Items(d), tolerance(spec)),
                        scope,
                    )
                }
                // `collect = "x"`: x's per-key values when x is mapped; else the
                // items of x's dynamic output (write `x.out` for a mapped x's items).
                (InputSpec::Collect(..), None) if !up.scope.is_empty() => (
                    Source::Collect(CollectTarget::Values(ValueRef::result(id)), tolerance(spec)),
                    up.scope.clone(),
                ),
                (InputSpec::Collect(..), None) if !up.dynamic_outputs.is_empty() => {
                    let d = dyn_out(&only_output()?);
                    let scope = item_scope(&d);
                    (
                        Source::Collect(CollectTarget::Items(d), tolerance(spec)),
                        scope,
                    )
                }
                (InputSpec::Collect(..), None) => {
                    return Err(self.bad_input(name, input, format!(
                        "cannot collect `{}`: it is neither mapped nor dynamic, so it has one value; read it plainly with `{}`",
                        up.name, up.name
                    )));
                }
            };
            resolved.push((
                PlannedInput {
                    name: input.clone(),
                    source,
                },
                scope,
            ));
        }
        let scope = self.op_scope(name, &resolved, ops)?;
        for (input, source_scope) in &resolved {
            self.check_input_scope(name, input, source_scope, &scope, ops)?;
        }
        Ok((
            scope,
            resolved.into_iter().map(|(input, _)| input).collect(),
        ))
    }

    /// The deepest `map` scope; every other `map` scope must be its prefix.
    fn op_scope(
        &self,
        name: &str,
        resolved: &[(PlannedInput, Vec<DynOutput>)],
        ops: &[PlannedOp],
    ) -> Result<Vec<DynOutput>, PlanError> {
        let spec = &self.spec.ops[name];
        let mut scope: Vec<DynOutput> = Vec::new();
        for (input, source_scope) in resolved {
            if !matches!(spec.inputs[&input.name], InputSpec::Map(_)) {
                continue;
            }
            if is_prefix(&scope, source_scope) {
                scope = source_scope.clone();
            } else if !is_prefix(source_scope, &scope) {
                return Err(self.bad_input(name, &input.name, format!(
                    "maps over {} while another input maps over {}; one op can map over one fan-out (and the fan-outs it is nested in)",
                    describe(source_scope, ops),
                    describe(&scope, ops)
                )));
            }
        }
        Ok(scope)
    }

    fn check_input_scope(
        &self,
        name: &str,
        input: &PlannedInput,
        source_scope: &[DynOutput],
        scope: &[DynOutput],
        ops: &[PlannedOp],
    ) -> Result<(), PlanError> {
        match &input.source {
            Source::Collect(target, _) => {
                let ok = source_scope.len() > scope.len() && is_prefix(scope, source_scope);
                if !ok {
                    let what = match target {
                        CollectTarget::Values(v) => format!("`{}`", label(v, ops)),
                        CollectTarget::Items(d) => format!("`{}.{}`", ops[d.op].name, d.output),
                    };
                    return Err(self.bad_input(name, &input.name, format!(
                        "collects {what}, which does not run inside `{name}`'s own map ({}); collect only gathers from a fan-out nested in the collecting op's scope",
                        describe(scope, ops)
                    )));
                }
            }
            Source::Value(v) if !is_prefix(source_scope, scope) => {
                let up = &label(v, ops);
                return Err(self.bad_input(name, &input.name, format!(
                    "reads `{up}` plainly, but `{up}` runs once per key of {} and `{name}` does not; use {{ collect = \"{up}\" }} to gather its results or {{ map = \"{up}\" }} to run once per key",
                    describe(source_scope, ops)
                )));
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn policy(
        &self,
        name: &str,
        op: &OpSpec,
        base: &Path,
        dynamic_outputs: &[String],
        plain_outputs: &[super::PlainOutput],
    ) -> Result<SandboxPolicy, PlanError> {
        let mut mounts = Vec::new();
        for mount in &op.mounts {
            let host = base.join(&mount.host);
            let host = host.canonicalize().map_err(|e| {
                self.setting(
                    name,
                    format!(
                        "mount `{}` (resolved to `{}`): {e}",
                        mount.host,
                        host.display()
                    ),
                )
            })?;
            if !host.is_dir() {
                return Err(
                    self.setting(name, format!("mount `{}` is not a directory", mount.host))
                );
            }
            check_guest_path(&mount.guest).map_err(|reason| {
                self.setting(
                    name,
                    format!(
                        "`mounts`: guest path `{}` {reason}",
                        mount.guest.escape_debug()
                    ),
                )
            })?;
            if let Some(earlier) = mounts.iter().find(|m: &&Mount| m.guest == mount.guest) {
                return Err(self.setting(
                    name,
                    format!(
                        "`mounts`: two mounts on guest path `{}` (host `{}` and `{}`); one would hide the other, so give each its own guest path",
                        mount.guest,
                        earlier.host.display(),
                        host.display()
                    ),
                ));
            }
            mounts.push(Mount {
                host,
                guest: mount.guest.clone(),
                writable: mount.writable,
                shared: mount.shared,
            });
        }
        for (key, value) in &op.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(self.setting(
                    name,
                    format!(
                        "`env`: variable `{}` is invalid: names must be non-empty without `=` or NUL, values without NUL",
                        key.escape_debug()
                    ),
                ));
            }
        }
        let limits = super::limits::resolve(&op.limits, &self.spec.defaults)
            .map_err(|e| self.setting(name, e))?;
        let (outbound, secrets) = self.services(name, op)?;
        let mut output_types = Vec::new();
        if op
            .outputs
            .values()
            .any(|o| o.value_type.is_some() || o.schema.is_some())
        {
            for output in dynamic_outputs {
                let declared = op.outputs.get(output);
                let value_type = super::config::value_type(
                    declared.and_then(|o| o.value_type.as_deref()),
                    declared.and_then(|o| o.schema.as_ref()),
                    base,
                )
                .map_err(|e| self.setting(name, format!("`outputs.{output}`: {e}")))?;
                output_types.push(value_type);
            }
        }
        let mut plain_output_types = Vec::new();
        for output in plain_outputs {
            let declared = op.outputs.get(&output.name);
            let value_type = super::config::value_type(
                declared.and_then(|o| o.value_type.as_deref()),
                declared.and_then(|o| o.schema.as_ref()),
                base,
            )
            .map_err(|e| self.setting(name, format!("`outputs.{}`: {e}", output.name)))?;
            plain_output_types.push(value_type);
        }
        let result_type = match &op.returns {
            Some(returns) => super::config::value_type(
                returns.value_type.as_deref(),
                returns.schema.as_ref(),
                base,
            )
            .map_err(|e| self.setting(name, format!("`returns`: {e}")))?,
            None => ValueType::default(),
        };
        Ok(SandboxPolicy {
            mounts,
            env: op.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            limits,
            dynamic_outputs: dynamic_outputs.to_vec(),
            output_types: output_types.into(),
            plain_outputs: plain_outputs.iter().map(|p| p.name.clone()).collect(),
            plain_required: plain_outputs.iter().map(|p| p.required).collect(),
            plain_output_types,
            result_type,
            result_required: op.returns.as_ref().and_then(|r| r.required).unwrap_or(true),
            deterministic: op.deterministic,
            outbound: outbound.into(),
            secrets,
        })
    }

    /// `allowed_outbound_hosts` and `secrets`: parsed, and checked against
    /// `deterministic` and the host's environment (a missing secret stops
    /// the run before any step, not at the thousandth key).
    #[allow(clippy::type_complexity)]
    fn services(
        &self,
        name: &str,
        op: &OpSpec,
    ) -> Result<(Vec<OutboundHost>, Vec<(String, String)>), PlanError> {
        let outbound = op
            .allowed_outbound_hosts
            .iter()
            .map(|entry| OutboundHost::parse(entry).map_err(|e| self.setting(name, e)))
            .collect::<Result<Vec<_>, _>>()?;
        if op.deterministic && !outbound.is_empty() {
            return Err(self.setting(
                name,
                "`deterministic = true` cannot go with `allowed_outbound_hosts`: a service's answers are not reproducible, so a rerun could differ; drop one of the two".into(),
            ));
        }
        let mut secrets = Vec::new();
        for (guest, host) in &op.secrets {
            if guest.is_empty()
                || guest.contains(['=', '\0'])
                || host.is_empty()
                || host.contains(['=', '\0'])
            {
                return Err(self.setting(
                    name,
                    format!(
                        "`secrets`: `{} = \"{}\"` is invalid: both names must be non-empty without `=` or NUL",
                        guest.escape_debug(),
                        host.escape_debug()
                    ),
                ));
            }
            if op.env.contains_key(guest) {
                return Err(self.setting(
                    name,
                    format!("`{guest}` is in both `env` and `secrets`; keep it in one"),
                ));
            }
            if std::env::var_os(host).is_none() {
                return Err(self.setting(
                    name,
                    format!(
                        "secret `{guest}` comes from the environment variable `{host}`, which is not set; export {host} before running dynhost"
                    ),
                ));
            }
            secrets.push((guest.clone(), host.clone()));
        }
        Ok((outbound, secrets))
    }

    pub(super) fn retry(&self, name: &str, op: &OpSpec) -> Result<RetryPolicy, PlanError> {
        let backoff = match op.retry_backoff_secs {
            None => DEFAULT_RETRY_BACKOFF,
            Some(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(self.setting(
                    name,
                    format!("`retry_backoff_secs` must be between 0 and 3600, got {s}"),
                ));
            }
        };
        let retry_on = match &op.retry_on {
            None if op.deterministic => vec![FailureKind::Timeout],
            None => vec![
                FailureKind::Timeout,
                FailureKind::OpError,
                FailureKind::Trap,
            ],
            Some(names) => names
                .iter()
                .map(|n| {
                    FailureKind::ALL
                        .into_iter()
                        .find(|k| k.as_str() == n)
                        .ok_or_else(|| {
                            let known: Vec<&str> =
                                FailureKind::ALL.iter().map(|k| k.as_str()).collect();
                            self.setting(
                                name,
                                format!(
                                    "`retry_on` names unknown failure kind `{n}` (known: {})",
                                    known.join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(RetryPolicy {
            max_retries: op.retries.unwrap_or(0),
            backoff,
            retry_on,
        })
    }
}

/// `the items of `files.result`` or `no fan-out`, for messages.
fn describe(scope: &[DynOutput], ops: &[PlannedOp]) -> String {
    match scope.last() {
        None => "no fan-out".to_owned(),
        Some(d) => format!("`{}.{}`", ops[d.op].name, d.output),
    }
}

/// Why a mount's guest path is not absolute and normalized (`/data`,
/// `/data/in`), or `Ok`: the op must see exactly the path the job names.
fn check_guest_path(guest: &str) -> Result<(), &'static str> {
    if guest.contains('\0') {
        return Err("contains a NUL byte");
    }
    let Some(rest) = guest.strip_prefix('/') else {
        return Err("must be absolute, e.g. `/data`");
    };
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        match component {
            "" => {
                return Err(
                    "has an empty component (`//` or a trailing `/`); write it like `/data/in`",
                );
            }
            "." | ".." => return Err("must be normalized: no `.` or `..` components"),
            _ => {}
        }
    }
    Ok(())
}
