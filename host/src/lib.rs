//! dynhost runs data jobs whose ops are WebAssembly components, with Dagster's
//! dynamic mapping and collect: an op emits items with mapping keys at run
//! time, a downstream op runs once per key in a fresh sandboxed instance, and
//! a collect gathers the per-key results in a deterministic order.
//!
//! Data flows one way:
//!
//! ```text
//! job.toml --spec::load--> JobSpec --Plan::build--> Plan --exec::run--> RunReport
//!                                                    |          |
//!                                        Runtime::load      Runtime::run_step (one Store per step)
//! ```
//!
//! - [`spec`]: the job file as written (serde types, syntax errors).
//! - [`plan`]: the resolved graph: scopes of map and collect, paths, limits.
//! - [`runtime`]: the wasmtime sandbox; knows nothing of jobs.
//! - [`exec`]: scheduling and concurrency; the only module with threads.
//! - [`report`]: the run's outcome as data. The library never prints.

pub mod allocator;
pub mod build;
pub mod componentize;
mod error;
pub mod exec;
pub mod graph;
pub mod key;
pub mod nats;
pub mod plan;
pub mod procs;
pub mod report;
pub mod resume;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod ui;

pub use error::{Error, Result};
pub use exec::{RunEvent, RunOptions};
pub use key::MappingKey;
pub use plan::Plan;
pub use report::RunReport;
pub use runtime::{FailureKind, OpComponent, OpFailure, Runtime, RuntimeConfig};
pub use spec::JobSpec;

/// Loads and resolves a job file: [`spec::load`] then [`Plan::build`].
///
/// # Errors
/// [`Error::Spec`] or [`Error::Plan`], naming the file and op.
pub fn load_plan(path: &std::path::Path) -> Result<Plan> {
    load_plan_with(path, &spec::Overrides::default())
}

/// [`load_plan`] with config overrides (`--config`, `--set`) applied before
/// planning, so defaults and `config_schema` checks see the final config.
///
/// # Errors
/// As [`load_plan`], and [`spec::SpecError::Override`].
pub fn load_plan_with(path: &std::path::Path, overrides: &spec::Overrides) -> Result<Plan> {
    let mut spec = spec::load(path)?;
    spec::apply_overrides(&mut spec, overrides)?;
    Ok(Plan::build(&spec)?)
}

/// Compiles (or loads from the cache) every op's component and checks that it
/// implements the dynhost world. The result is indexed like `plan.ops`.
///
/// # Errors
/// [`Error::Component`] naming the job file, the op and what is wrong.
pub fn load_components(runtime: &Runtime, plan: &Plan) -> Result<Vec<OpComponent>> {
    load_components_with(runtime, plan, &mut |_| {})
}

/// [`load_components`], calling `on_compile` before and after each
/// component that is compiled rather than taken from the compile cache.
///
/// # Errors
/// As [`load_components`].
pub fn load_components_with(
    runtime: &Runtime,
    plan: &Plan,
    on_compile: &mut dyn FnMut(runtime::Compiling<'_>),
) -> Result<Vec<OpComponent>> {
    // Ops that share a component file share one compiled component.
    let mut loaded: std::collections::HashMap<&std::path::Path, OpComponent> =
        std::collections::HashMap::new();
    let mut components = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        if let Some(component) = loaded.get(op.component.as_path()) {
            components.push(component.clone());
            continue;
        }
        let component =
            runtime
                .load_with(&op.component, on_compile)
                .map_err(|e| Error::Component {
                    file: plan.job_file.clone(),
                    op: op.name.clone(),
                    reason: e.to_string(),
                })?;
        loaded.insert(&op.component, component.clone());
        components.push(component);
    }
    Ok(components)
}
