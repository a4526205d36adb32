//! The locked plan: the resolved plan as it ran, with every op's component
//! named by content (`{ source, digest }`, like Spin's locked app). It is
//! stored with each run, so `show` (and later the run viewer and remote
//! workers) work from what ran, not from today's job file, and a component
//! is identified by its digest, not by a path that may have changed.

use super::Plan;
use crate::runtime::OpComponent;
use serde::{Deserialize, Serialize};

/// Bumped whenever the locked plan's shape changes incompatibly.
pub const LOCK_FORMAT: u32 = 1;

/// A plan with its components pinned by digest.
#[derive(Debug, Serialize)]
pub struct LockedPlan<'a> {
    /// [`LOCK_FORMAT`].
    pub format: u32,
    /// The resolved plan: ops in topological order, inputs, scopes,
    /// policies (mounts, limits, types with their schemas), retries.
    pub plan: &'a Plan,
    /// Per op (same order): where its component came from and its digest.
    pub components: Vec<LockedComponent>,
}

/// One op's component, by content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockedComponent {
    /// The op.
    pub op: String,
    /// The file it was loaded from.
    pub source: String,
    /// `sha256:` and the hex SHA-256 of the file's bytes.
    pub digest: String,
}

/// Locks `plan` to `components` (one per op, in plan order, as
/// [`crate::load_components`] returns them).
pub fn lock<'a>(plan: &'a Plan, components: &[OpComponent]) -> LockedPlan<'a> {
    LockedPlan {
        format: LOCK_FORMAT,
        plan,
        components: plan
            .ops
            .iter()
            .zip(components)
            .map(|(op, component)| LockedComponent {
                op: op.name.clone(),
                source: op.component.display().to_string(),
                digest: format!("sha256:{}", component.hash),
            })
            .collect(),
    }
}

/// A locked plan read back (by a worker, or to draw what a run ran).
#[derive(Debug, Deserialize)]
pub struct Locked {
    /// [`LOCK_FORMAT`].
    pub format: u32,
    /// The plan.
    pub plan: Plan,
    /// Per op (same order): its component by digest.
    pub components: Vec<LockedComponent>,
}

impl Locked {
    /// Reads a locked plan.
    ///
    /// # Errors
    /// Not a locked plan, or one of another format.
    pub fn from_json(text: &[u8]) -> Result<Self, String> {
        let locked: Self = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if locked.format != LOCK_FORMAT {
            return Err(format!(
                "locked plan format {}, this dynhost reads {LOCK_FORMAT}",
                locked.format
            ));
        }
        Ok(locked)
    }
}

impl LockedPlan<'_> {
    /// As JSON text, the form the run store keeps.
    pub fn to_json(&self) -> String {
        // A plan holds strings, numbers and maps only: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}
