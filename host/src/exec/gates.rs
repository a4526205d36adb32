//! Admission of ready steps against concurrency caps and rate limits: an
//! op's `max_concurrent`, and the `[resources.NAME]` it names (a slot while
//! the step runs, a token from a token bucket when it starts).
//!
//! A step that cannot start yet is parked here, not on a worker: it holds
//! no thread and no slot while it waits (like a retry's backoff), and the
//! workers run other steps meanwhile. Parked steps of an op start in the
//! order they became ready.
//!
//! With a run store, a resource's slots and bucket live in files beside it
//! (`resources/NAME/slot-I`, `resources/NAME/bucket`), so every run sharing
//! the store shares the limits: a slot is an exclusive `flock` held while
//! the step runs (the kernel drops it if the process dies, so a crash never
//! leaks a slot), and the bucket is a small file updated under a lock.
//! Without a store the same limits hold within the run.

use super::scheduler::StepId;
use super::transport::StepRequest;
use crate::plan::Plan;
use crate::plan::resources::{PlannedResource, Rate};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The slots one step holds, one entry per resource of its op (inline: an
/// op names a few resources at most).
type Held = smallvec::SmallVec<[Option<usize>; 2]>;

/// How often to look again for a slot another process may have freed.
const SHARED_POLL: Duration = Duration::from_millis(20);

/// At most this many steps wait here; beyond it the coordinator stops
/// taking ready steps until some start (so a gated op with a million ready
/// keys does not build a million calls at once).
pub(crate) const MAX_PARKED: usize = 10_000;

/// Why a parked step waits, for the `step_waiting` event.
pub(crate) struct Waiting {
    /// The step.
    pub step: StepId,
    /// The limit it waits for, e.g. "resource `api` (max_concurrent 3)".
    pub on: Arc<str>,
}

/// The limits of one run's ops and resources, and the steps held back.
pub(crate) struct Gates {
    /// Whether any op is gated at all: when not, nothing here costs anything.
    active: bool,
    op_cap: Vec<Option<u32>>,
    op_running: Vec<u32>,
    op_resources: Vec<Vec<usize>>,
    resources: Vec<Resource>,
    /// Ready steps that could not start yet, per op, oldest first, with the
    /// time they were parked.
    parked: Vec<VecDeque<(StepRequest, Instant)>>,
    parked_len: usize,
    /// Per running step of a gated op: the slot it holds in each of its
    /// op's resources (in the op's order; `None` for rate-only resources).
    held: FxHashMap<StepId, Held>,
    /// Per op, what its parked steps wait for, in words: its own cap, and
    /// its resources (made once: a million parked steps share them).
    blockers: Vec<(Arc<str>, Arc<str>)>,
    /// Time waited per step, until it is recorded.
    waited: FxHashMap<StepId, Duration>,
    /// Time waited per op, summed.
    pub waited_per_op: Vec<Duration>,
    /// Steps parked since the caller last looked, to report.
    pub newly_waiting: Vec<Waiting>,
}

impl Gates {
    /// The gates of `plan`; `shared` is the directory where runs sharing a
    /// store keep resource state (`None`: limits hold within this run).
    ///
    /// # Errors
    /// A message naming the directory when it cannot be created or opened.
    pub fn new(plan: &Plan, shared: Option<&Path>) -> Result<Self, String> {
        let active = plan
            .ops
            .iter()
            .any(|op| op.max_concurrent.is_some() || !op.resources.is_empty());
        let resources = if active {
            plan.resources
                .iter()
                .map(|r| Resource::new(r, shared))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let blockers = plan
            .ops
            .iter()
            .map(|op| {
                let cap = op.max_concurrent.map_or(String::new(), |cap| {
                    format!("the op's max_concurrent = {cap}")
                });
                let shared: Vec<String> = op
                    .resources
                    .iter()
                    .map(|&r| describe(&plan.resources[r]))
                    .collect();
                (Arc::from(cap), Arc::from(shared.join(", ")))
            })
            .collect();
        Ok(Self {
            blockers,
            active,
            op_cap: plan.ops.iter().map(|op| op.max_concurrent).collect(),
            op_running: vec![0; plan.ops.len()],
            op_resources: plan.ops.iter().map(|op| op.resources.clone()).collect(),
            resources,
            parked: plan.ops.iter().map(|_| VecDeque::new()).collect(),
            parked_len: 0,
            held: FxHashMap::default(),
            waited: FxHashMap::default(),
            waited_per_op: vec![Duration::ZERO; plan.ops.len()],
            newly_waiting: Vec::new(),
        })
    }

    fn gated(&self, op: usize) -> bool {
        self.op_cap[op].is_some() || !self.op_resources[op].is_empty()
    }

    /// Steps parked now.
    pub fn parked(&self) -> usize {
        self.parked_len
    }

    /// Whether more ready steps may be taken (and parked if they must wait).
    pub fn has_room(&self) -> bool {
        self.parked_len < MAX_PARKED
    }

    /// Lets `request` start now (returned), or parks it.
    pub fn admit(&mut self, request: StepRequest, now: Instant) -> Option<StepRequest> {
        let op = request.step.op;
        if !self.active || !self.gated(op) {
            return Some(request);
        }
        // Behind others of its op: keep their order.
        if self.parked[op].is_empty() && self.try_acquire(&request.step).is_ok() {
            return Some(request);
        }
        let on = self.blocker(op);
        self.newly_waiting.push(Waiting {
            step: request.step.clone(),
            on,
        });
        self.parked[op].push_back((request, now));
        self.parked_len += 1;
        None
    }

    /// The next parked step whose limits now let it start, if any.
    pub fn unpark(&mut self, now: Instant) -> Option<StepRequest> {
        if self.parked_len == 0 {
            return None;
        }
        for op in 0..self.parked.len() {
            let Some((front, _)) = self.parked[op].front() else {
                continue;
            };
            let step = front.step.clone();
            if self.try_acquire(&step).is_ok() {
                let (request, since) = self.parked[op].pop_front()?;
                self.parked_len -= 1;
                let waited = now.saturating_duration_since(since);
                self.waited_per_op[op] += waited;
                self.waited.insert(request.step.clone(), waited);
                return Some(request);
            }
        }
        None
    }

    /// When to look at the parked steps again even if no step finishes: the
    /// soonest token, or a short poll for slots held by other processes.
    pub fn next_wake(&mut self, now: Instant) -> Option<Instant> {
        if self.parked_len == 0 {
            return None;
        }
        let mut wake: Option<Instant> = None;
        for op in 0..self.parked.len() {
            if self.parked[op].is_empty() {
                continue;
            }
            for &r in &self.op_resources[op] {
                let resource = &mut self.resources[r];
                let at = match (&resource.slots, &mut resource.bucket) {
                    (Slots::Shared { .. }, _) => Some(now + SHARED_POLL),
                    (_, Some(bucket)) => Some(now + bucket.wait()),
                    _ => None,
                };
                if let Some(at) = at {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
        }
        wake
    }

    /// Frees what `step` held (it finished, failed or was reused).
    pub fn release(&mut self, step: &StepId) {
        if !self.active || !self.gated(step.op) {
            return;
        }
        let Some(slots) = self.held.remove(step) else {
            return;
        };
        self.op_running[step.op] = self.op_running[step.op].saturating_sub(1);
        for (&r, slot) in self.op_resources[step.op].iter().zip(slots) {
            self.resources[r].release(slot);
        }
    }

    /// The time `step` waited before its current attempt (zero if none).
    pub fn take_waited(&mut self, step: &StepId) -> Duration {
        if self.waited.is_empty() {
            return Duration::ZERO;
        }
        self.waited.remove(step).unwrap_or_default()
    }

    /// Drops the parked steps (the run is stopping); they run on resume.
    pub fn drop_parked(&mut self) {
        for queue in &mut self.parked {
            queue.clear();
        }
        self.parked_len = 0;
    }

    /// Takes the op's cap, every resource's slot, then every token; gives
    /// back what it took if anything is missing.
    fn try_acquire(&mut self, step: &StepId) -> Result<(), ()> {
        let op = step.op;
        if self.op_cap[op].is_some_and(|cap| self.op_running[op] >= cap) {
            return Err(());
        }
        let ids = &self.op_resources[op];
        let mut slots = Held::new();
        for &r in ids {
            match self.resources[r].take_slot() {
                Ok(slot) => slots.push(slot),
                Err(()) => {
                    for (&r, slot) in ids.iter().zip(slots) {
                        self.resources[r].release(slot);
                    }
                    return Err(());
                }
            }
        }
        for (tokens, &r) in ids.iter().enumerate() {
            if self.resources[r]
                .bucket
                .as_mut()
                .is_some_and(|b| !b.try_take())
            {
                for &taken in &ids[..tokens] {
                    if let Some(bucket) = self.resources[taken].bucket.as_mut() {
                        bucket.refund();
                    }
                }
                for (&r, slot) in ids.iter().zip(slots) {
                    self.resources[r].release(slot);
                }
                return Err(());
            }
        }
        self.op_running[op] += 1;
        self.held.insert(step.clone(), slots);
        Ok(())
    }

    /// What an op's parked step waits for, in words.
    fn blocker(&self, op: usize) -> Arc<str> {
        let (cap, resources) = &self.blockers[op];
        if self.op_cap[op].is_some_and(|cap| self.op_running[op] >= cap) {
            cap.clone()
        } else {
            resources.clone()
        }
    }
}

/// One resource's slots and bucket.
struct Resource {
    slots: Slots,
    bucket: Option<Bucket>,
}

enum Slots {
    None,
    Local {
        max: u32,
        taken: u32,
    },
    /// One lock file per slot; `held[i]` when this process holds slot `i`.
    /// The search starts after the slot taken last (`next`), so taking one
    /// costs one `flock` when slots are plenty, not one per slot held.
    Shared {
        files: Vec<File>,
        held: Vec<bool>,
        next: usize,
    },
}

impl Resource {
    fn new(spec: &PlannedResource, shared: Option<&Path>) -> Result<Self, String> {
        let dir = shared.map(|d| d.join(&spec.name));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "cannot create `{}` for resource `{}`'s shared limits: {e}",
                    dir.display(),
                    spec.name
                )
            })?;
        }
        let open = |path: PathBuf| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| format!("cannot open `{}`: {e}", path.display()))
        };
        let slots = match (spec.max_concurrent, &dir) {
            (None, _) => Slots::None,
            (Some(max), None) => Slots::Local { max, taken: 0 },
            (Some(max), Some(dir)) => Slots::Shared {
                files: (0..max)
                    .map(|i| open(dir.join(format!("slot-{i}"))))
                    .collect::<Result<_, _>>()?,
                held: vec![false; max as usize],
                next: 0,
            },
        };
        let bucket = match (&spec.rate, &dir) {
            (None, _) => None,
            (Some(rate), None) => Some(Bucket::local(rate)),
            (Some(rate), Some(dir)) => Some(Bucket {
                rate: rate.clone(),
                tokens: f64::from(rate.burst),
                at: Instant::now(),
                file: Some(open(dir.join("bucket"))?),
            }),
        };
        Ok(Self { slots, bucket })
    }

    fn take_slot(&mut self) -> Result<Option<usize>, ()> {
        match &mut self.slots {
            Slots::None => Ok(None),
            Slots::Local { max, taken } if *taken < *max => {
                *taken += 1;
                Ok(None)
            }
            Slots::Local { .. } => Err(()),
            Slots::Shared { files, held, next } => {
                let n = files.len();
                for i in (*next..n).chain(0..*next) {
                    if !held[i] && files[i].try_lock().is_ok() {
                        held[i] = true;
                        *next = (i + 1) % n;
                        return Ok(Some(i));
                    }
                }
                Err(())
            }
        }
    }

    fn release(&mut self, slot: Option<usize>) {
        match (&mut self.slots, slot) {
            (Slots::Local { taken, .. }, _) => *taken = taken.saturating_sub(1),
            (Slots::Shared { files, held, .. }, Some(i)) if held[i] => {
                let _ = files[i].unlock();
                held[i] = false;
            }
            _ => {}
        }
    }
}

/// A resource and its limits in words, for `step_waiting`.
fn describe(spec: &PlannedResource) -> String {
    let mut limits = Vec::new();
    if let Some(max) = spec.max_concurrent {
        limits.push(format!("max_concurrent {max}"));
    }
    if let Some(rate) = &spec.rate {
        limits.push(format!("rate {}", rate.text));
    }
    format!("resource `{}` ({})", spec.name, limits.join(", "))
}

/// A token bucket, in memory or in a file shared by processes (then the
/// in-memory fields are only a cache for [`Bucket::wait`]).
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
    file: Option<File>,
}

impl Bucket {
    fn local(rate: &Rate) -> Self {
        Self {
            rate: rate.clone(),
            tokens: f64::from(rate.burst),
            at: Instant::now(),
            file: None,
        }
    }

    /// Takes a token if there is one.
    fn try_take(&mut self) -> bool {
        self.update(|tokens| {
            if tokens >= 1.0 {
                (tokens - 1.0, true)
            } else {
                (tokens, false)
            }
        })
    }

    /// Gives back a token taken for a step that could not start after all.
    fn refund(&mut self) {
        let burst = f64::from(self.rate.burst);
        self.update(|tokens| ((tokens + 1.0).min(burst), ()));
    }

    /// How long until the next token (zero if one is there).
    fn wait(&mut self) -> Duration {
        let tokens = self.update(|tokens| (tokens, tokens));
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.rate.per_second)
        }
    }

    /// Refills the bucket for the time passed, then applies `f` to the
    /// token count, under the file's lock when shared.
    fn update<T>(&mut self, f: impl FnOnce(f64) -> (f64, T)) -> T {
        let burst = f64::from(self.rate.burst);
        let per_second = self.rate.per_second;
        let refill = |tokens: f64, elapsed: f64| (tokens + elapsed * per_second).min(burst);
        let Some(file) = &self.file else {
            let now = Instant::now();
            let tokens = refill(self.tokens, (now - self.at).as_secs_f64());
            let (tokens, out) = f(tokens);
            self.tokens = tokens;
            self.at = now;
            return out;
        };
        // Shared: the state is (tokens, wall-clock seconds) in the file;
        // wall time because it is the clock all the processes share.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let locked = file.lock().is_ok();
        let (tokens, at) = read_bucket(file).unwrap_or((burst, now));
        let tokens = refill(tokens, (now - at).max(0.0));
        let (tokens, out) = f(tokens);
        let _ = write_bucket(file, tokens, now);
        if locked {
            let _ = file.unlock();
        }
        self.tokens = tokens;
        self.at = Instant::now();
        out
    }
}

fn read_bucket(file: &File) -> Option<(f64, f64)> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; 16];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let tokens = f64::from_le_bytes(bytes[..8].try_into().ok()?);
    let at = f64::from_le_bytes(bytes[8..].try_into().ok()?);
    (tokens.is_finite() && at.is_finite()).then_some((tokens, at))
}

fn write_bucket(file: &File, tokens: f64, at: f64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&tokens.to_le_bytes());
    bytes[8..].copy_from_slice(&at.to_le_bytes());
    file.write_all_at(&bytes, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate {
            per_second,
            burst,
            text: format!("{per_second}/s"),
        }
    }

    #[test]
    fn a_local_bucket_gives_burst_then_waits() {
        let mut bucket = Bucket::local(&rate(10.0, 2));
        assert!(bucket.try_take());
        assert!(bucket.try_take());
        assert!(!bucket.try_take());
        let wait = bucket.wait();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100));
        bucket.refund();
        assert!(bucket.try_take());
    }

    #[test]
    fn shared_slots_and_buckets_hold_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let spec = PlannedResource {
            name: "api".into(),
            max_concurrent: Some(2),
            rate: Some(rate(1.0, 3)),
            description: None,
        };
        // Two handles on the same files stand for two processes.
        let mut a = Resource::new(&spec, Some(dir.path())).unwrap();
        let mut b = Resource::new(&spec, Some(dir.path())).unwrap();
        let first = a.take_slot().unwrap();
        let second = b.take_slot().unwrap();
        assert_ne!(first, second);
        assert!(a.take_slot().is_err() && b.take_slot().is_err());
        a.release(first);
        assert!(b.take_slot().is_ok());
        let (x, y) = (a.bucket.as_mut().unwrap(), b.bucket.as_mut().unwrap());
        assert!(x.try_take() && y.try_take() && x.try_take());
        assert!(!y.try_take(), "the burst of 3 is shared");
    }
}
