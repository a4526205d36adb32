//! The resolved job: [`Plan::build`] turns a [`JobSpec`] into a validated DAG.
//!
//! A plan has absolute paths, limits with defaults applied, ops in topological
//! order and, for every op, its *scope*: the chain of dynamic outputs it is
//! mapped over, outermost first. Scopes are what make map, collect and nesting
//! one mechanism: an op runs once per key path of its scope; `map` adds a level,
//! `collect` gathers every level below the collecting op's own scope.

pub mod config;
mod error;
pub mod limits;
pub mod lock;
pub mod resources;

pub use error::PlanError;

use crate::runtime::{FailureKind, SandboxPolicy};
use crate::spec::{DynamicSpec, JobSpec, OpSpec, Tolerance};
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Index of an op in [`Plan::ops`].
pub type OpId = usize;

/// How deep dynamic fan-outs may nest by default (`op[a][b][c][d]`). Each level
/// multiplies the step count; four levels cover every real job we know of.
/// `[defaults] max_nesting` raises it.
pub const DEFAULT_MAX_NESTING: usize = 4;
/// The most `[defaults] max_nesting` may allow: every step carries its key
/// path and every op its scope, so nesting thousands deep would cost
/// quadratic time and memory in the plan for no real job.
pub const MAX_NESTING: u64 = 16;

/// The default wait before the first retry; it doubles on each further retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// A validated, resolved job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The job's name.
    pub job_name: String,
    /// The job file.
    pub job_file: PathBuf,
    /// Ops in topological order: every op comes after the ops it reads.
    pub ops: Vec<PlannedOp>,
    /// Shared resources with concurrency and rate limits, in name order.
    #[serde(default)]
    pub resources: Vec<resources::PlannedResource>,
}

/// One dynamic output of one op.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DynOutput {
    /// The emitting op.
    pub op: OpId,
    /// The output's name.
    pub output: String,
}

/// One op, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedOp {
    /// The op's name.
    pub name: String,
    /// Absolute path of the component.
    pub component: PathBuf,
    /// The build command, run in `build_dir`.
    pub build: Option<String>,
    /// The job file's directory.
    pub build_dir: PathBuf,
    /// `config` as JSON text.
    pub config_json: String,
    /// The dynamic outputs the op declares.
    pub dynamic_outputs: Vec<String>,
    /// Per dynamic output (same order): `false` if it may end with no items,
    /// which skips what is mapped over it and what collects it.
    pub required_outputs: Vec<bool>,
    /// Per dynamic output (same order): its description.
    pub output_descriptions: Vec<Option<String>>,
    /// Named plain outputs besides the result (Dagster's several `Out`s),
    /// set by the op with `set-output` (WIT 0.2.0), in name order.
    pub plain_outputs: Vec<PlainOutput>,
    /// What the op does.
    pub description: Option<String>,
    /// Where the op's values are also written as files (absolute).
    pub values_dir: Option<PathBuf>,
    /// The dynamic outputs this op is mapped over, outermost first.
    pub scope: Vec<DynOutput>,
    /// Inputs, sorted by name.
    pub inputs: Vec<PlannedInput>,
    /// What the op may reach and use.
    pub policy: SandboxPolicy,
    /// When and how often a failed step runs again.
    pub retry: RetryPolicy,
    /// Whether a stored success with the same component, config and inputs
    /// is reused instead of running.
    pub cache: bool,
    /// Worker tags its steps need on remote workers, sorted.
    #[serde(default)]
    pub placement: Vec<String>,
    /// At most this many of its steps run at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// The `Plan::resources` (indices, ascending) each of its steps holds.
    #[serde(default)]
    pub resources: Vec<usize>,
}

/// A named plain output of an op (`outputs.NAME = { plain = true }`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlainOutput {
    /// Its name: readers write `op.NAME`.
    pub name: String,
    /// `false`: the op may leave it unset; readers are then skipped.
    pub required: bool,
    /// What it is.
    pub description: Option<String>,
}

/// A step's plain value: its result or one of its named plain outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueRef {
    /// The op.
    pub op: OpId,
    /// Index into the op's [`PlannedOp::plain_outputs`]; `None` for the result.
    pub output: Option<usize>,
}

impl ValueRef {
    /// The op's result.
    pub fn result(op: OpId) -> Self {
        Self { op, output: None }
    }

    /// `op` or `op.NAME`, as job.toml writes it.
    pub fn label(&self, plan: &Plan) -> String {
        let op = &plan.ops[self.op];
        match self.output {
            None => op.name.clone(),
            Some(i) => format!("{}.{}", op.name, op.plain_outputs[i].name),
        }
    }
}

/// When a failed step runs again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubles on each further one.
    pub backoff: Duration,
    /// Failure kinds worth retrying. Limits, bad keys and bad components fail
    /// the same way again, so they are not retried unless listed.
    pub retry_on: Vec<FailureKind>,
}

/// One named input, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedInput {
    /// The input's name.
    pub name: String,
    /// Where its value comes from.
    pub source: Source,
}

/// Where an input's value comes from, for a step with key path `k`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Source {
    /// The return value (or a named plain output) of an op at the prefix of
    /// `k` that is that op's own key path: a plain input, or a chained map
    /// over a mapped op.
    Value(ValueRef),
    /// The item of `output` whose key is the last key of `k` (a direct map).
    Item(DynOutput),
    /// Every element below this step's key path; runs despite failed
    /// elements only within the tolerance.
    Collect(CollectTarget, Tolerance),
}

/// What a collect gathers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CollectTarget {
    /// The return values (or one named plain output) of a mapped op.
    Values(ValueRef),
    /// The emitted items of a dynamic output.
    Items(DynOutput),
}

impl Source {
    /// The op this input reads from.
    pub fn op(&self) -> OpId {
        match self {
            Source::Value(v) | Source::Collect(CollectTarget::Values(v), _) => v.op,
            Source::Item(d) | Source::Collect(CollectTarget::Items(d), _) => d.op,
        }
    }
}

impl Plan {
    /// Resolves and validates `spec`.
    ///
    /// # Errors
    /// The first [`PlanError`] found, naming the job file and op.
    pub fn build(spec: &JobSpec) -> Result<Plan, PlanError> {
        let file = spec.file.clone();
        if spec.ops.is_empty() {
            return Err(PlanError::NoOps { file });
        }
        let base = spec
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        check_defaults(spec)?;
        let resolver = Resolver { spec, file: &file };
        resolver.check_names()?;
        let order = resolver.topological_order()?;
        let resources = resolver.resources()?;
        let id_of: BTreeMap<&str, OpId> = order
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let mut ops: Vec<PlannedOp> = Vec::with_capacity(order.len());
        for name in &order {
            let op_spec = &spec.ops[name];
            let dynamic_outputs = dynamic_outputs(op_spec);
            for (output, declared) in &op_spec.outputs {
                let plain = declared.plain == Some(true);
                if plain && dynamic_outputs.contains(output) {
                    return Err(resolver.setting(
                        name,
                        format!("`outputs.{output}` is listed in `dynamic` and says `plain = true`; an output is one or the other"),
                    ));
                }
                if plain && output == "result" {
                    return Err(resolver.setting(
                        name,
                        "`outputs.result` cannot be plain: `result` is the op's return value; declare it with `returns`".into(),
                    ));
                }
                if !plain && !dynamic_outputs.contains(output) {
                    return Err(resolver.setting(
                        name,
                        format!(
                            "`outputs.{output}` names no dynamic output of this op ({}); declare it in `dynamic`, or add `plain = true` for a named plain output",
                            if dynamic_outputs.is_empty() {
                                "it has none".to_owned()
                            } else {
                                format!("it has: {}", dynamic_outputs.join(", "))
                            }
                        ),
                    ));
                }
            }
            let plain_outputs = plain_outputs(op_spec);
            let declared = |o: &String| op_spec.outputs.get(o);
            let required_outputs = dynamic_outputs
                .iter()
                .map(|o| declared(o).and_then(|d| d.required).unwrap_or(true))
                .collect();
            let output_descriptions = dynamic_outputs
                .iter()
                .map(|o| declared(o).and_then(|d| d.description.clone()))
                .collect();
            let (scope, inputs) = resolver.resolve_inputs(name, op_spec, &id_of, &ops)?;
            let max_nesting = spec
                .defaults
                .max_nesting
                .map_or(DEFAULT_MAX_NESTING, |n| n as usize);
            if scope.len() > max_nesting {
                return Err(resolver.setting(
                    name,
                    format!(
                        "dynamic fan-out nested {} levels deep, past the `max_nesting` limit of {max_nesting}; raise `max_nesting` in `[defaults]`",
                        scope.len()
                    ),
                ));
            }
            let component = normalize(&base.join(&op_spec.component));
            if component.is_dir() {
                return Err(resolver.setting(
                    name,
                    format!(
                        "`component = \"{}\"` is a directory; give the component file built in it (a `.wasm`, e.g. `target/wasm32-wasip2/release/NAME.wasm` for a Rust op)",
                        op_spec.component
                    ),
                ));
            }
            if !component.is_file() {
                let hint = match &op_spec.build {
                    Some(_) => {
                        "build it with `dynhost build` (runs the op's `build` command)".to_owned()
                    }
                    None => "check the path, or build the component".to_owned(),
                };
                return Err(PlanError::MissingComponent {
                    file,
                    op: name.clone(),
                    path: PathBuf::from(&op_spec.component),
                    hint,
                });
            }
            let config = op_spec.config.clone().unwrap_or_default();
            let mut config_value = serde_json::to_value(&config).map_err(|e| {
                resolver.setting(name, format!("`config` cannot be turned into JSON: {e}"))
            })?;
            if let Some(schema) = &op_spec.config_schema {
                let schema =
                    config::load_schema(schema, &base).map_err(|e| resolver.setting(name, e))?;
                config_value = config::apply_schema(config_value, &schema)
                    .map_err(|e| resolver.setting(name, e))?;
            }
            let config_json = config_value.to_string();
            // Mount host paths may name config values (`${config.data}`), so
            // one `--set` points a job at other data.
            let with_mounts;
            let op_spec = if op_spec.mounts.iter().any(|m| m.host.contains("${config.")) {
                let mut expanded = op_spec.clone();
                for mount in &mut expanded.mounts {
                    mount.host = config::expand(&mount.host, &config_value)
                        .map_err(|e| resolver.setting(name, e))?;
                }
                with_mounts = expanded;
                &with_mounts
            } else {
                op_spec
            };
            let policy = resolver.policy(name, op_spec, &base, &dynamic_outputs, &plain_outputs)?;
            check_expects(&resolver, name, op_spec, &inputs, &ops)?;
            let retry = resolver.retry(name, op_spec)?;
            let (max_concurrent, op_resources) = resolver.op_gates(name, op_spec, &resources)?;
            ops.push(PlannedOp {
                name: name.clone(),
                component,
                build: op_spec.build.clone(),
                build_dir: base.clone(),
                config_json,
                dynamic_outputs,
                required_outputs,
                output_descriptions,
                plain_outputs,
                description: op_spec.description.clone(),
                values_dir: op_spec
                    .values_dir
                    .as_ref()
                    .map(|d| normalize(&base.join(d))),
                scope,
                inputs,
                policy,
                retry,
                cache: op_spec.cache,
                placement: {
                    let mut tags = op_spec.placement.clone();
                    tags.sort();
                    tags.dedup();
                    tags
                },
                max_concurrent,
                resources: op_resources,
            });
        }
        Ok(Plan {
            job_name: spec.name.clone(),
            job_file: file,
            ops,
            resources,
        })
    }

    /// The op named `name`.
    pub fn op_id(&self, name: &str) -> Option<OpId> {
        self.ops.iter().position(|op| op.name == name)
    }

    /// The wasm stack every step gets (job-wide).
    pub fn stack_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| op.policy.limits.stack_bytes)
            .max()
            .unwrap_or(limits::DEFAULT_STACK_BYTES)
    }

    /// The largest memory limit of any op, for sizing the instance pool.
    pub fn max_memory_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| op.policy.limits.memory_bytes)
            .max()
            .unwrap_or(limits::DEFAULT_MEMORY_BYTES)
    }
}

/// Checks the job-wide settings of `[defaults]`, which no op owns.
fn check_defaults(spec: &JobSpec) -> Result<(), PlanError> {
    let bad = |reason: String| PlanError::BadDefault {
        file: spec.file.clone(),
        reason,
    };
    if let Some(n) = spec.defaults.max_nesting
        && n > MAX_NESTING
    {
        return Err(bad(format!(
            "`[defaults] max_nesting` must be between 0 and {MAX_NESTING}, got {n}"
        )));
    }
    if let Some(kib) = spec.defaults.stack_kib {
        let range = (limits::MIN_STACK_BYTES >> 10)..=(limits::MAX_STACK_BYTES >> 10);
        if !range.contains(&kib) {
            return Err(bad(format!(
                "`[defaults] stack_kib` must be between {} and {} (KiB), got {kib}",
                range.start(),
                range.end()
            )));
        }
    }
    Ok(())
}

/// Removes `.` and `..` lexically (without following links), so messages show
/// the path a user would type.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `expects.INPUT = "json"`: refuses an input whose source declares a type
/// that does not satisfy it (an undeclared source is not judged).
fn check_expects(
    resolver: &Resolver<'_>,
    name: &str,
    op_spec: &OpSpec,
    inputs: &[PlannedInput],
    ops: &[PlannedOp],
) -> Result<(), PlanError> {
    use crate::runtime::types::ValueKind;
    for (input, want) in &op_spec.expects {
        let want = ValueKind::parse(want)
            .map_err(|e| resolver.setting(name, format!("`expects.{input}`: {e}")))?;
        let Some(planned) = inputs.iter().find(|i| i.name == *input) else {
            return Err(
                resolver.setting(name, format!("`expects.{input}` names no input of this op"))
            );
        };
        let (from, have) = match &planned.source {
            Source::Value(v) | Source::Collect(CollectTarget::Values(v), _) => {
                let up = &ops[v.op];
                match v.output {
                    None => (
                        format!("the result of `{}`", up.name),
                        up.policy.result_type.kind,
                    ),
                    Some(i) => (
                        format!("output `{}.{}`", up.name, up.plain_outputs[i].name),
                        up.policy
                            .plain_output_types
                            .get(i)
                            .map(|t| t.kind)
                            .unwrap_or_default(),
                    ),
                }
            }
            Source::Item(d) | Source::Collect(CollectTarget::Items(d), _) => {
                let up = &ops[d.op];
                let kind = up
                    .dynamic_outputs
                    .iter()
                    .position(|o| *o == d.output)
                    .and_then(|i| up.policy.output_types.get(i))
                    .map(|t| t.kind)
                    .unwrap_or_default();
                (format!("output `{}.{}`", up.name, d.output), kind)
            }
        };
        if !have.satisfies(want) {
            return Err(resolver.setting(
                name,
                format!(
                    "input `{input}` expects `{}` but {from} is declared `{}`; make the types agree in job.toml",
                    want.as_str(),
                    have.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// The op's named plain outputs (`outputs.NAME = { plain = true }`), by name.
fn plain_outputs(op: &OpSpec) -> Vec<PlainOutput> {
    op.outputs
        .iter()
        .filter(|(_, o)| o.plain == Some(true))
        .map(|(name, o)| PlainOutput {
            name: name.clone(),
            required: o.required.unwrap_or(true),
            description: o.description.clone(),
        })
        .collect()
}

fn dynamic_outputs(op: &OpSpec) -> Vec<String> {
    match &op.dynamic {
        None | Some(DynamicSpec::Flag(false)) => Vec::new(),
        Some(DynamicSpec::Flag(true)) => vec!["result".to_owned()],
        Some(DynamicSpec::Names(names)) => names.clone(),
    }
}

/// Op and output names: like Rust identifiers plus `-`, because they appear in
/// `op.output` references and `op[key]` step names.
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name `{name}` must be 1 to 64 characters from `A-Z a-z 0-9 _ -`"
        ))
    }
}

/// Holds what every resolution step needs for its messages.
struct Resolver<'a> {
    spec: &'a JobSpec,
    file: &'a PathBuf,
}

/// A parsed reference: `op` or `op.output`.
struct Reference<'a> {
    op: &'a str,
    output: Option<&'a str>,
}

fn split_reference(text: &str) -> Reference<'_> {
    match text.split_once('.') {
        Some((op, output)) => Reference {
            op,
            output: Some(output),
        },
        None => Reference {
            op: text,
            output: None,
        },
    }
}

impl Resolver<'_> {
    fn setting(&self, op: &str, reason: String) -> PlanError {
        PlanError::BadSetting {
            file: self.file.clone(),
            op: op.to_owned(),
            reason,
        }
    }

    fn bad_input(&self, op: &str, input: &str, reason: String) -> PlanError {
        PlanError::BadInput {
            file: self.file.clone(),
            op: op.to_owned(),
            input: input.to_owned(),
            reason,
        }
    }

    fn check_names(&self) -> Result<(), PlanError> {
        for (name, op) in &self.spec.ops {
            let invalid = |reason| PlanError::InvalidName {
                file: self.file.clone(),
                op: name.clone(),
                reason,
            };
            check_name("op", name).map_err(invalid)?;
            let outputs = dynamic_outputs(op);
            let mut seen = BTreeSet::new();
            for output in &outputs {
                check_name("dynamic output", output).map_err(invalid)?;
                if !seen.insert(output) {
                    return Err(invalid(format!(
                        "dynamic output `{output}` is declared twice"
                    )));
                }
            }
            for plain in plain_outputs(op) {
                check_name("plain output", &plain.name).map_err(invalid)?;
            }
            for tag in &op.placement {
                check_name("placement tag", tag).map_err(invalid)?;
            }
            if matches!(&op.dynamic, Some(DynamicSpec::Names(n)) if n.is_empty()) {
                return Err(invalid(
                    "`dynamic = []` declares no output; use `dynamic = true` or list names".into(),
                ));
            }
            for (input, source) in &op.inputs {
                let text = source.reference();
                let reference = split_reference(text);
                let Some(target) = self.spec.ops.get(reference.op) else {
                    let known = self
                        .spec
                        .ops
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(PlanError::UnknownOp {
                        file: self.file.clone(),
                        op: name.clone(),
                        input: input.clone(),
                        reference: reference.op.to_owned(),
                        known,
                    });
                };
                if let Some(output) = reference.output {
                    let mut declared = dynamic_outputs(target);
                    declared.extend(plain_outputs(target).into_iter().map(|p| p.name));
                    if !declared.iter().any(|d| d == output) {
                        let known = if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared
                                .iter()
                                .map(|d| format!("`{d}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        return Err(PlanError::UnknownOutput {
                            file: self.file.clone(),
                            op: name.clone(),
                            input: input.clone(),
                            reference: format!("{}.{output}", reference.op),
                            known,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Kahn's algorithm over op names, in O(ops + edges): each op's level
    /// is one more than its deepest input's, and ops are ordered by level,
    /// then name, so plans are stable.
    fn topological_order(&self) -> Result<Vec<String>, PlanError> {
        let names: Vec<&str> = self.spec.ops.keys().map(String::as_str).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        // deps[i]: the ops op i reads (deduplicated); readers[j]: who reads j.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (i, op) in self.spec.ops.values().enumerate() {
            for source in op.inputs.values() {
                if let Some(&j) = index.get(split_reference(source.reference()).op) {
                    deps[i].push(j);
                }
            }
            deps[i].sort_unstable();
            deps[i].dedup();
            for &j in &deps[i] {
                readers[j].push(i);
            }
        }
        let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut level = vec![0usize; names.len()];
        let mut queue: std::collections::VecDeque<usize> =
            (0..names.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(names.len());
        while let Some(i) = queue.pop_front() {
            order.push(i);
            for &r in &readers[i] {
                level[r] = level[r].max(level[i] + 1);
                waiting[r] -= 1;
                if waiting[r] == 0 {
                    queue.push_back(r);
                }
            }
        }
        if order.len() < names.len() {
            return Err(PlanError::Cycle {
                file: self.file.clone(),
                cycle: find_cycle(&names, &deps, &waiting),
            });
        }
        order.sort_by_key(|&i| (level[i], names[i]));
        Ok(order.into_iter().map(|i| names[i].to_owned()).collect())
    }
}

/// Ops of a cycle named in an error message; longer cycles are cut.
const CYCLE_SHOWN: usize = 5;

/// Walks dependencies among the ops Kahn's algorithm left over (`waiting`
/// non-zero) until one repeats, and renders that loop as `a -> b -> a`,
/// naming at most [`CYCLE_SHOWN`] ops and how many more there are.
fn find_cycle(names: &[&str], deps: &[Vec<usize>], waiting: &[usize]) -> String {
    let Some(start) = (0..names.len()).find(|&i| waiting[i] > 0) else {
        return String::new();
    };
    let mut path: Vec<usize> = vec![start];
    let mut on_path: HashMap<usize, usize> = HashMap::default();
    on_path.insert(start, 0);
    let cycle = loop {
        let last = path[path.len() - 1];
        // An op left over always reads another one left over.
        let Some(&next) = deps[last].iter().find(|&&d| waiting[d] > 0) else {
            break path;
        };
        if let Some(&at) = on_path.get(&next) {
            break path.split_off(at);
        }
        on_path.insert(next, path.len());
        path.push(next);
    };
    let shown: Vec<&str> = cycle.iter().take(CYCLE_SHOWN).map(|&i| names[i]).collect();
    let first = names[cycle[0]];
    if cycle.len() > CYCLE_SHOWN {
        format!(
            "{} -> ... ({} more ops) -> {first}",
            shown.join(" -> "),
            cycle.len() - CYCLE_SHOWN
        )
    } else {
        format!("{} -> {first}", shown.join(" -> "))
    }
}

mod resolve;

#[cfg(test)]
mod tests;
