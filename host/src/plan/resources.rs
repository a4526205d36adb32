//! `[resources.NAME]` and the per-op `max_concurrent`/`resources` settings:
//! the limits a step must get past before it starts (see `exec::gates`).

use super::{PlanError, Resolver};
use crate::spec::{OpSpec, ResourceSpec};
use serde::{Deserialize, Serialize};

/// A shared resource's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedResource {
    /// Its name in the job file (and in the store, where runs share it).
    pub name: String,
    /// At most this many steps hold it at once.
    pub max_concurrent: Option<u32>,
    /// At most this many steps start per second, on average.
    pub rate: Option<Rate>,
    /// What it is.
    pub description: Option<String>,
}

/// A token bucket: `per_second` tokens flow in, at most `burst` are kept;
/// a step takes one to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens per second.
    pub per_second: f64,
    /// The bucket's size.
    pub burst: u32,
    /// As written (`50/s`), for messages.
    pub text: String,
}

/// Parses `N/s`, `N/m` or `N/h` (also `second`, `minute`, `hour`).
///
/// # Errors
/// A message that says what to write.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "`rate = \"{}\"` is not a rate; write starts per time unit, e.g. \"50/s\", \"600/m\" or \"1000/h\"",
            text.escape_debug()
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: f64 = count.trim().parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    if !(count.is_finite() && count > 0.0) {
        return Err(bad());
    }
    Ok(count / seconds)
}

impl Resolver<'_> {
    /// The job's `[resources]`, in name order (a step's resources are
    /// acquired in this order, so two ops never wait on each other in a
    /// cycle).
    pub(super) fn resources(&self) -> Result<Vec<PlannedResource>, PlanError> {
        let mut out = Vec::new();
        for (name, spec) in &self.spec.resources {
            out.push(self.resource(name, spec)?);
        }
        Ok(out)
    }

    fn resource(&self, name: &str, spec: &ResourceSpec) -> Result<PlannedResource, PlanError> {
        let bad = |reason: String| PlanError::BadResource {
            file: self.file.clone(),
            resource: name.to_owned(),
            reason,
        };
        super::check_name("resource", name).map_err(bad)?;
        if spec.max_concurrent == Some(0) {
            return Err(bad(
                "`max_concurrent` must be at least 1 (0 would never run a step)".into(),
            ));
        }
        let rate = match &spec.rate {
            Some(text) => Some(Rate {
                per_second: parse_rate(text).map_err(bad)?,
                burst: match spec.burst {
                    Some(0) => return Err(bad("`burst` must be at least 1".into())),
                    b => b.unwrap_or(1),
                },
                text: text.clone(),
            }),
            None if spec.burst.is_some() => {
                return Err(bad("`burst` needs a `rate`".into()));
            }
            None => None,
        };
        if spec.max_concurrent.is_none() && rate.is_none() {
            return Err(bad(
                "it sets no limit; give it `max_concurrent = N`, `rate = \"N/s\"` or both".into(),
            ));
        }
        Ok(PlannedResource {
            name: name.to_owned(),
            max_concurrent: spec.max_concurrent,
            rate,
            description: spec.description.clone(),
        })
    }

    /// An op's `max_concurrent` and the indices of the resources it names.
    pub(super) fn op_gates(
        &self,
        name: &str,
        op: &OpSpec,
        resources: &[PlannedResource],
    ) -> Result<(Option<u32>, Vec<usize>), PlanError> {
        if op.max_concurrent == Some(0) {
            return Err(self.setting(
                name,
                "`max_concurrent` must be at least 1 (0 would never run a step)".into(),
            ));
        }
        let mut ids = Vec::new();
        for wanted in &op.resources {
            let id = resources
                .iter()
                .position(|r| &r.name == wanted)
                .ok_or_else(|| {
                    let known: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
                    self.setting(
                        name,
                        format!(
                            "`resources` names `{wanted}`, which is not declared; add `[resources.{wanted}]` with `max_concurrent` or `rate` (declared: {})",
                            if known.is_empty() { "none".into() } else { known.join(", ") }
                        ),
                    )
                })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok((op.max_concurrent, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_read_per_second_minute_and_hour() {
        assert_eq!(parse_rate("50/s").unwrap(), 50.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_rate("1800 / hour").unwrap(), 0.5);
        for bad in ["50", "0/s", "-1/s", "x/s", "5/day", "inf/s"] {
            assert!(parse_rate(bad).unwrap_err().contains("50/s"), "{bad}");
        }
    }
}
