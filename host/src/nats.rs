//! Mapped steps on many machines through NATS JetStream (issue 13): the
//! coordinator's `Transport` and the long-lived `dynhost worker`.
//!
//! - Steps go to the work-queue stream `DYNHOST_STEPS` on subject
//!   `dynhost.steps.RUN.EPOCH.PLACEMENT` (`any`, or the op's `placement`
//!   tags joined by `+`). Workers pull from one shared durable consumer per
//!   placement, each from those whose tags they all carry, so each step goes
//!   to one matching worker at a time. Workers announce themselves (name,
//!   tags, slots) on `dynhost.workers.NAME` in the stream `DYNHOST_WORKERS`
//!   (last message per worker, kept for a few seconds unless refreshed), so
//!   a run can refuse a placement no live worker matches. A worker holds a
//!   step by its lease (the consumer's ack wait), renews it while the step
//!   runs (in-progress acks), and acks it only after its end is stored: a
//!   worker that dies mid-step lets the lease lapse and the step is
//!   delivered again, to another worker.
//! - Items and ends go to the stream `DYNHOST_EVENTS` on
//!   `dynhost.events.RUN.EPOCH.{item,done}`, which the coordinator reads in
//!   order. Attempts, item positions and item counts (`exec::wire`) make a
//!   redelivered step's duplicate events harmless.
//! - The epoch is new for every coordinator process: a resumed run ignores
//!   what a dead coordinator's workers still send.
//! - Components travel by content: the locked plan (object store
//!   `dynhost-plans`) names each by SHA-256, the bytes are in
//!   `dynhost-components` under that digest, and a worker runs nothing else.
//!   Values over `wire::INLINE_MAX` go through `dynhost-values` by digest.
//!
//! NATS I/O is async (tokio); the coordinator and the sandbox stay
//! synchronous and talk to it through channels and `block_on`.

use crate::exec::transport::{Events, StepRequest, Transport, Woke};
use crate::exec::wire::{
    self, BlobStore, EventBatchMsg, FinishedMsg, ItemMsg, StepBatchMsg, StepMsg,
};
use crate::plan::Plan;
use crate::plan::lock::Locked;
use crate::runtime::{FailureKind, OpComponent, OpFailure, Runtime, RuntimeConfig, StepReport};
use async_nats::jetstream::{self, consumer, object_store, stream};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The work-queue stream of steps.
const STEPS: &str = "DYNHOST_STEPS";
/// The stream of items and ends.
const EVENTS: &str = "DYNHOST_EVENTS";
/// The durable consumers workers pull steps from: one per placement.
const WORKERS: &str = "dynhost-workers";
/// The stream of live workers' announcements.
const REGISTRY: &str = "DYNHOST_WORKERS";
/// How long a worker's entry in the registry lives without a refresh.
const REGISTRY_TTL: Duration = Duration::from_secs(15);
/// Tags one worker may carry (it pulls from a consumer per subset of them).
pub const MAX_TAGS: usize = 4;
const PLANS: &str = "dynhost-plans";
const COMPONENTS: &str = "dynhost-components";
const VALUES: &str = "dynhost-values";

/// How long a worker holds a step without renewing its lease, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Why NATS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached or refused us.
    #[error(
        "cannot connect to NATS at {url}: {reason}; start `nats-server -js` there, or fix `--nats`"
    )]
    Connect {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// An op needs worker tags no live worker carries.
    #[error(
        "`{file}`: op `{op}` needs workers tagged {tags}, and no connected worker is; start one with `dynhost worker --nats URL{flags}`"
    )]
    NoWorker {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// Its placement.
        tags: String,
        /// `--tag` flags that would match.
        flags: String,
    },
    /// A JetStream call failed.
    #[error("NATS JetStream: {0}; the server must run with JetStream enabled (`nats-server -js`)")]
    JetStream(String),
}

fn js_error(e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream(e.to_string())
}

/// How to reach the NATS server.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://host:port`.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// A CA certificate to trust; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// How long a worker holds a step before it is given to another,
    /// unless renewed (a worker's setting: the first worker of a placement
    /// sets it for that placement's consumer).
    pub lease: Duration,
}

async fn connect(options: &NatsOptions, name: &str) -> Result<async_nats::Client, NatsError> {
    let fail = |reason: String| NatsError::Connect {
        url: options.url.clone(),
        reason,
    };
    // No retry on the first connection: a wrong address or credentials must
    // say so, not surface later as a JetStream timeout.
    let mut connect = async_nats::ConnectOptions::new().name(name);
    if let Some(creds) = &options.creds {
        connect = connect
            .credentials_file(creds)
            .await
            .map_err(|e| fail(format!("credentials `{}`: {e}", creds.display())))?;
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        connect.connect(options.url.as_str()),
    )
    .await
    .map_err(|_| fail("no answer within 10 s".into()))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(client)
}

/// Creates (or finds) the streams, the workers' consumer and the buckets.
/// A worker and a coordinator that start together both create them; the
/// one that loses a race is told so by the server, so a failed attempt is
/// tried again (the streams exist by then) before it counts as an error.
async fn setup(js: &jetstream::Context) -> Result<Buckets, NatsError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match setup_once(js).await {
            Ok(buckets) => return Ok(buckets),
            Err(e) if tries < 3 => {
                tracing::debug!("setting up JetStream again after: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn setup_once(js: &jetstream::Context) -> Result<Buckets, NatsError> {
    js.get_or_create_stream(stream::Config {
        name: STEPS.into(),
        subjects: vec!["dynhost.steps.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .map_err(js_error)?;
    let registry = js
        .get_or_create_stream(stream::Config {
            name: REGISTRY.into(),
            subjects: vec!["dynhost.workers.>".into()],
            max_messages_per_subject: 1,
            max_age: REGISTRY_TTL,
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
    js.get_or_create_stream(stream::Config {
        name: EVENTS.into(),
        subjects: vec!["dynhost.events.>".into()],
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(js_error)?;
    let bucket = |name: &str| object_store::Config {
        bucket: name.into(),
        ..Default::default()
    };
    let mut stores = Vec::new();
    for name in [PLANS, COMPONENTS, VALUES] {
        let store = match js.get_object_store(name).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(bucket(name))
                .await
                .map_err(js_error)?,
        };
        stores.push(store);
    }
    let values = stores.pop().expect("three buckets");
    let components = stores.pop().expect("three buckets");
    let plans = stores.pop().expect("three buckets");
    Ok(Buckets {
        plans,
        components,
        values,
        registry,
    })
}

#[derive(Clone)]
struct Buckets {
    registry: stream::Stream,
    plans: object_store::ObjectStore,
    components: object_store::ObjectStore,
    values: object_store::ObjectStore,
}

async fn get_object(store: &object_store::ObjectStore, name: &str) -> Result<Vec<u8>, String> {
    let mut object = store.get(name).await.map_err(|e| format!("{name}: {e}"))?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(bytes)
}

async fn put_object(
    store: &object_store::ObjectStore,
    name: &str,
    bytes: &[u8],
) -> Result<(), String> {
    if store.info(name).await.is_ok() {
        return Ok(());
    }
    let mut reader = bytes;
    store
        .put(name, &mut reader)
        .await
        .map(|_| ())
        .map_err(|e| format!("{name}: {e}"))
}

/// Values over the inline size, in the `dynhost-values` bucket by digest.
struct Values {
    store: object_store::ObjectStore,
    handle: tokio::runtime::Handle,
}

impl BlobStore for Values {
    fn put(&mut self, bytes: &[u8]) -> Result<String, String> {
        let digest = format!("sha256:{}", crate::store::hash_bytes(bytes));
        let name = digest.replace(':', "-");
        self.handle
            .block_on(put_object(&self.store, &name, bytes))?;
        Ok(digest)
    }

    fn get(&mut self, digest: &str) -> Result<Vec<u8>, String> {
        let name = digest.replace(':', "-");
        self.handle.block_on(get_object(&self.store, &name))
    }
}

/// The subject token and consumer suffix of a placement.
fn placement_key(tags: &[String]) -> String {
    if tags.is_empty() {
        "any".to_owned()
    } else {
        tags.join("+")
    }
}

/// What a worker says of itself in the registry.
#[derive(serde::Serialize, serde::Deserialize)]
struct Announcement {
    name: String,
    tags: Vec<String>,
    slots: usize,
}

/// Refuses a plan with an op whose placement no live worker matches.
async fn check_workers(registry: &stream::Stream, plan: &Plan) -> Result<(), NatsError> {
    if plan.ops.iter().all(|op| op.placement.is_empty()) {
        return Ok(());
    }
    let mut workers: Vec<Announcement> = Vec::new();
    let reader = registry
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            filter_subject: "dynhost.workers.>".into(),
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
    let mut messages = reader.messages().await.map_err(js_error)?;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(300), messages.next()).await
    {
        if let Ok(worker) = serde_json::from_slice::<Announcement>(&message.payload) {
            workers.push(worker);
        }
        if message.info().is_ok_and(|info| info.pending == 0) {
            break;
        }
    }
    for op in plan.ops.iter().filter(|op| !op.placement.is_empty()) {
        let matches = workers
            .iter()
            .any(|w| op.placement.iter().all(|tag| w.tags.contains(tag)));
        if !matches {
            return Err(NatsError::NoWorker {
                file: plan.job_file.clone(),
                op: op.name.clone(),
                tags: op.placement.join(", "),
                flags: op.placement.iter().map(|t| format!(" --tag {t}")).collect(),
            });
        }
    }
    Ok(())
}

/// Checks, against the live workers, that every op's placement is served.
///
/// # Errors
/// [`NatsError::NoWorker`] naming the first op no worker can run, or a
/// connection error.
pub fn check_placement(options: &NatsOptions, plan: &Plan) -> Result<(), NatsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NatsError::JetStream(e.to_string()))?;
    runtime.block_on(async {
        let client = connect(options, "dynhost validate").await?;
        let js = jetstream::new(client);
        let buckets = setup(&js).await?;
        check_workers(&buckets.registry, plan).await
    })
}

/// A new epoch: this coordinator process's mark on the subjects it uses.
fn new_epoch() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{now}x{}", std::process::id())
}

/// The coordinator's side: publishes steps, reads events.
pub(crate) struct NatsTransport<'p> {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    plan: &'p Plan,
    run_id: String,
    digests: Vec<String>,
    /// `dynhost.steps.RUN.EPOCH`; each op's steps go to `.PLACEMENT` below it.
    steps_subject: String,
    /// Per op: the last subject token, from its placement.
    placements: Vec<String>,
    values: Values,
    events: crossbeam_channel::Receiver<bytes::Bytes>,
    /// Steps handed over and not yet ended.
    capacity: usize,
}

impl<'p> NatsTransport<'p> {
    /// Connects, publishes the locked plan and the components, and starts
    /// reading this epoch's events.
    ///
    /// # Errors
    /// [`NatsError`] if the server cannot be reached or JetStream is off.
    pub fn start(
        options: &NatsOptions,
        plan: &'p Plan,
        components: &[OpComponent],
        run_id: &str,
        locked_plan: &str,
        capacity: usize,
    ) -> Result<Self, NatsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("dynhost-nats")
            .build()
            .map_err(|e| NatsError::JetStream(e.to_string()))?;
        let epoch = new_epoch();
        let (tx, events) = crossbeam_channel::unbounded();
        let (js, buckets) = runtime.block_on(async {
            let client = connect(options, &format!("dynhost run {run_id}")).await?;
            let js = jetstream::new(client);
            let buckets = setup(&js).await?;
            check_workers(&buckets.registry, plan).await?;
            put_object(
                &buckets.plans,
                &format!("{run_id}.{epoch}"),
                locked_plan.as_bytes(),
            )
            .await
            .map_err(NatsError::JetStream)?;
            for (op, component) in plan.ops.iter().zip(components) {
                let bytes = std::fs::read(&op.component).map_err(|e| {
                    NatsError::JetStream(format!("cannot read `{}`: {e}", op.component.display()))
                })?;
                put_object(
                    &buckets.components,
                    &format!("sha256-{}", component.hash),
                    &bytes,
                )
                .await
                .map_err(NatsError::JetStream)?;
            }
            // Steps an earlier coordinator of this run left queued (it died,
            // and this is `resume`) would only run for nothing.
            let steps = js.get_stream(STEPS).await.map_err(js_error)?;
            steps
                .purge()
                .filter(format!("dynhost.steps.{run_id}.>"))
                .await
                .map_err(js_error)?;
            let events = js.get_stream(EVENTS).await.map_err(js_error)?;
            let reader = events
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: format!("dynhost.events.{run_id}.{epoch}.>"),
                    ..Default::default()
                })
                .await
                .map_err(js_error)?;
            let mut messages = reader.messages().await.map_err(js_error)?;
            tokio::spawn(async move {
                while let Some(Ok(message)) = messages.next().await {
                    if tx.send(message.payload.clone()).is_err() {
                        break;
                    }
                }
            });
            Ok::<_, NatsError>((js, buckets))
        })?;
        let handle = runtime.handle().clone();
        Ok(Self {
            values: Values {
                store: buckets.values,
                handle,
            },
            runtime,
            js,
            plan,
            run_id: run_id.to_owned(),
            digests: components
                .iter()
                .map(|c| format!("sha256:{}", c.hash))
                .collect(),
            steps_subject: format!("dynhost.steps.{run_id}.{epoch}"),
            placements: plan
                .ops
                .iter()
                .map(|op| placement_key(&op.placement))
                .collect(),
            events,
            capacity,
        })
    }

    /// A batch of events, items first.
    fn decode(&mut self, payload: &[u8], events: &mut Events) -> Result<(), wire::WireError> {
        let batch: EventBatchMsg = wire::decode(payload)?;
        for item in batch.items {
            events.push(item.event(self.plan, &mut self.values)?);
        }
        for end in batch.finished {
            events.push(end.event(self.plan, &mut self.values)?);
        }
        Ok(())
    }
}

impl Transport for NatsTransport<'_> {
    fn capacity(&self, _ready: usize) -> usize {
        self.capacity
    }

    fn submit(&mut self, steps: Vec<StepRequest>) {
        // Batches per placement: big enough that a large fan-out costs few
        // messages, small enough that every worker gets some.
        let size = (steps.len() / BATCHES_PER_SUBMIT).clamp(1, MAX_BATCH);
        // (op, steps written, bytes) per batch.
        let mut batches: Vec<(usize, Vec<Vec<u8>>, usize)> = Vec::new();
        for request in &steps {
            let op = request.step.op;
            let digest = &self.digests[op];
            let msg = match StepMsg::new(&self.run_id, self.plan, digest, request, &mut self.values)
            {
                Ok(msg) => wire::encode(&msg),
                Err(e) => {
                    tracing::error!("cannot send a step: {e}");
                    continue;
                }
            };
            let placement = &self.placements[op];
            let bytes = msg.len();
            match batches.iter_mut().rev().find(|(p, b, n)| {
                self.placements[*p] == *placement && b.len() < size && n + bytes <= MAX_MESSAGE
            }) {
                Some((_, batch, n)) => {
                    batch.push(msg);
                    *n += bytes;
                }
                None => batches.push((op, vec![msg], bytes)),
            }
        }
        let messages: Vec<(String, Vec<u8>)> = batches
            .into_iter()
            .map(|(op, steps, _)| {
                let subject = format!("{}.{}", self.steps_subject, self.placements[op]);
                (subject, wire::batch(&[("steps", &steps)]))
            })
            .collect();
        let js = self.js.clone();
        self.runtime.block_on(async move {
            let mut acks = Vec::with_capacity(messages.len());
            for (subject, payload) in messages {
                match js.publish(subject, payload.into()).await {
                    Ok(ack) => acks.push(ack),
                    Err(e) => tracing::error!("cannot publish a step: {e}"),
                }
            }
            for ack in acks {
                if let Err(e) = ack.await {
                    tracing::error!("a step was not stored by JetStream: {e}");
                }
            }
        });
    }

    fn wait(&mut self, timeout: Duration, events: &mut Events) -> Woke {
        let first = if timeout.is_zero() {
            match self.events.try_recv() {
                Ok(first) => first,
                Err(crossbeam_channel::TryRecvError::Empty) => return Woke::Quiet,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Woke::Closed,
            }
        } else {
            match self
                .events
                .recv_timeout(timeout.min(Duration::from_secs(3600)))
            {
                Ok(first) => first,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Woke::Looked,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Woke::Closed,
            }
        };
        // Events come one message at a time; waking the coordinator for
        // each costs more than the event. Take what keeps arriving within
        // a short gap (at most `COALESCE` in all), then act on it together.
        let until = std::time::Instant::now() + COALESCE;
        let mut next = Some(first);
        loop {
            while let Some(payload) = next.take().or_else(|| self.events.try_recv().ok()) {
                if let Err(e) = self.decode(&payload, events) {
                    tracing::warn!("ignoring events: {e}");
                }
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left.min(COALESCE_GAP)) {
                Ok(event) => next = Some(event),
                Err(_) => break,
            }
        }
        Woke::Looked
    }

    fn stop(&mut self) -> usize {
        let js = self.js.clone();
        let subject = format!("{}.>", self.steps_subject);
        self.runtime.block_on(async move {
            if let Ok(steps) = js.get_stream(STEPS).await {
                let _ = steps.purge().filter(subject).await;
            }
        });
        // Steps running remotely are not waited for: an interrupted run
        // records none of them, and `resume` runs them again.
        usize::MAX
    }
}

/// Steps handed to NATS and not yet ended, at most: enough to keep dozens
/// of workers busy, few enough that the stream stays small.
const IN_FLIGHT: usize = 4096;
/// How long the coordinator keeps taking events that keep arriving before
/// it acts on them, at most, and the longest gap between two it waits for.
const COALESCE: Duration = Duration::from_millis(2);
const COALESCE_GAP: Duration = Duration::from_micros(300);
/// Bytes a batch message aims to stay under (the server's default payload
/// limit is 1 MiB).
const MAX_MESSAGE: usize = 512 << 10;
/// The steps of one submission are split into about this many messages...
const BATCHES_PER_SUBMIT: usize = 64;
/// ...of at most this many steps each.
const MAX_BATCH: usize = 64;

/// Per op: whether it must run on the coordinator's machine under `--nats`,
/// because it mounts a directory not marked `shared` (a remote worker would
/// not see those files, and results must not differ silently).
pub fn local_ops(plan: &Plan) -> Vec<bool> {
    plan.ops
        .iter()
        .map(|op| op.policy.mounts.iter().any(|m| !m.shared))
        .collect()
}

/// Where a remote run's steps go, and the plan the workers run.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    /// The server.
    pub nats: &'a NatsOptions,
    /// The locked plan as JSON (components by digest).
    pub locked_plan: &'a str,
}

/// Runs every step of `plan` on `dynhost worker`s reached through NATS;
/// this process coordinates (scheduling, store, progress) as for a local
/// run. `locked_plan` is the plan with components by digest (what the
/// workers run). Ops with a mount not marked `shared` run on `runtime`
/// here instead: only this machine sees that directory.
///
/// # Errors
/// [`NatsError`] if the plan cannot run remotely or the server cannot be used.
pub fn run(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &crate::exec::RunOptions,
    storage: crate::exec::Storage,
    observer: &mut dyn FnMut(crate::exec::RunEvent<'_>),
    remote: &Remote<'_>,
) -> Result<crate::exec::RunResult, NatsError> {
    let Remote { nats, locked_plan } = *remote;
    let mut transport = NatsTransport::start(
        nats,
        plan,
        components,
        &options.run_id,
        locked_plan,
        IN_FLIGHT,
    )?;
    // Ops that mount directories other machines do not share run here.
    let local = local_ops(plan);
    if local.iter().any(|l| *l) {
        return Ok(crate::exec::run_split(
            plan,
            runtime,
            components,
            options,
            storage,
            observer,
            Some((&mut transport, local)),
        ));
    }
    let hashes: Vec<&str> = components.iter().map(|c| c.hash.as_str()).collect();
    Ok(crate::exec::run_on(
        plan,
        &hashes,
        options,
        storage,
        observer,
        &mut transport,
    ))
}

/// What `dynhost worker` is given.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server and lease.
    pub nats: NatsOptions,
    /// Steps run at once.
    pub max_concurrent: usize,
    /// Shown in NATS's connection list.
    pub name: String,
    /// Where components and their compiled forms are cached.
    pub cache_dir: PathBuf,
    /// Tags of this worker: it runs steps of ops whose `placement` it has.
    pub tags: Vec<String>,
}

/// One run as a worker knows it: its plan, runtime and loaded components.
struct RunContext {
    plan: Plan,
    /// Each op's call strings, made once per run.
    strings: Vec<crate::exec::worker::OpStrings>,
    runtime: Runtime,
    components: Vec<Option<OpComponent>>,
    digests: Vec<String>,
    /// To this run's event publisher (see [`publish_events`]).
    events: tokio::sync::mpsc::Sender<Outgoing>,
}

/// Events waiting for the publisher, at most: a step emitting faster than
/// NATS takes its items waits (and the wait is added to its time limit, as
/// on a local worker) instead of queueing them without bound.
const EVENT_QUEUE: usize = 16_384;

/// What a step hands the run's event publisher.
enum Outgoing {
    Item(ItemMsg),
    /// An end, and who to tell once it is stored.
    Finished(
        FinishedMsg,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    ),
}

/// Events gathered before one message is sent: at most this many (and
/// [`MAX_MESSAGE`] bytes)...
const EVENT_BATCH: usize = 512;
/// ...or what arrived within this long of the first.
const EVENT_LINGER: Duration = Duration::from_millis(2);

/// A worker's events of one run on their way into one message, written.
#[derive(Default)]
struct Gathered {
    items: Vec<Vec<u8>>,
    finished: Vec<Vec<u8>>,
    bytes: usize,
    /// The steps whose ends are in it, to tell once it is stored.
    waiting: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

impl Gathered {
    fn add(&mut self, event: Outgoing) {
        let written = match event {
            Outgoing::Item(item) => {
                self.items.push(wire::encode(&item));
                self.items.last()
            }
            Outgoing::Finished(end, tell) => {
                self.waiting.push(tell);
                self.finished.push(wire::encode(&end));
                self.finished.last()
            }
        };
        self.bytes += written.map_or(0, Vec::len);
    }
}

/// Sends one run's items and ends in batches to `subject`, and tells each
/// step when its end is stored (the step's message is acked only then).
/// A batch lists items before ends, so a step's items are never after its end.
async fn publish_events(
    js: jetstream::Context,
    subject: String,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = Gathered::default();
        batch.add(first);
        let until = tokio::time::Instant::now() + EVENT_LINGER;
        let mut count = 1;
        // One event is at most ~350 KiB (a 64 KiB value as base64, captured
        // output cut for the network): a batch stops growing at half the
        // message limit, so it stays under it.
        while count < EVENT_BATCH && batch.bytes < MAX_MESSAGE / 2 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(event)) => {
                    batch.add(event);
                    count += 1;
                }
                _ => break,
            }
        }
        let payload = wire::batch(&[("items", &batch.items), ("finished", &batch.finished)]);
        let stored = match js.publish(subject.clone(), payload.into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &stored {
            tracing::error!("events were not stored: {e}");
        }
        for tell in batch.waiting {
            let _ = tell.send(stored.clone());
        }
    }
}

/// `dynhost worker`: pulls steps and runs them until killed.
///
/// # Errors
/// [`NatsError`] if the server cannot be reached or JetStream is off.
pub fn work(options: &WorkerOptions) -> Result<(), NatsError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dynhost-worker-io")
        // Steps run on its blocking threads, on their own stack: room for
        // the largest wasm stack a job may ask for (reserved, not touched).
        .thread_stack_size(crate::runtime::thread_stack_bytes(
            crate::plan::limits::MAX_STACK_BYTES,
        ))
        .build()
        .map_err(|e| NatsError::JetStream(e.to_string()))?;
    runtime.block_on(work_async(options))
}

async fn work_async(options: &WorkerOptions) -> Result<(), NatsError> {
    let client = connect(&options.nats, &options.name).await?;
    let js = jetstream::new(client);
    let buckets = setup(&js).await?;
    let steps = js.get_stream(STEPS).await.map_err(js_error)?;
    // One consumer per placement this worker serves: every subset of its
    // tags, the most specific first (so a tagged worker prefers the steps
    // only it can run).
    let mut tags = options.tags.clone();
    tags.sort();
    tags.dedup();
    let mut placements: Vec<Vec<String>> = (0..1u32 << tags.len())
        .map(|mask| {
            tags.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| t.clone())
                .collect()
        })
        .collect();
    placements.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut consumers: Vec<consumer::PullConsumer> = Vec::new();
    for placement in &placements {
        let key = placement_key(placement);
        let name = format!("{WORKERS}-{key}");
        let consumer = steps
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("dynhost.steps.*.*.{key}"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: options.nats.lease,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_error)?;
        consumers.push(consumer);
    }
    // Announce this worker while it lives.
    {
        let js = js.clone();
        let announcement = serde_json::to_vec(&Announcement {
            name: options.name.clone(),
            tags: tags.clone(),
            slots: options.max_concurrent,
        })
        .unwrap_or_default();
        let key: String = options
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        tokio::spawn(async move {
            let subject = format!("dynhost.workers.{key}");
            loop {
                if let Ok(ack) = js
                    .publish(subject.clone(), announcement.clone().into())
                    .await
                {
                    let _ = ack.await;
                }
                tokio::time::sleep(REGISTRY_TTL / 3).await;
            }
        });
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_concurrent.max(1)));
    let runs: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Arc<RunContext>>>> =
        Arc::default();
    std::fs::create_dir_all(&options.cache_dir).map_err(|e| {
        NatsError::JetStream(format!(
            "cannot create `{}`: {e}",
            options.cache_dir.display()
        ))
    })?;
    eprintln!(
        "dynhost worker `{}`: pulling steps from {} ({} at once{})",
        options.name,
        options.nats.url,
        options.max_concurrent,
        if tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", tags.join(", "))
        }
    );
    // With several consumers, each is asked briefly in turn.
    let wait = if consumers.len() == 1 {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(200)
    };
    loop {
        let permit = slots.clone().acquire_owned().await.map_err(js_error)?;
        let mut found = None;
        while found.is_none() {
            for consumer in &consumers {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1)
                    .expires(wait)
                    .messages()
                    .await
                    .map_err(js_error)?;
                match batch.next().await {
                    Some(Ok(message)) => {
                        found = Some(message);
                        break;
                    }
                    Some(Err(e)) => tracing::warn!("fetching a step: {e}"),
                    None => {}
                }
            }
        }
        let Some(message) = found else { continue };
        let js = js.clone();
        let buckets = buckets.clone();
        let runs = runs.clone();
        let options = options.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            if let Err(e) =
                run_message(&js, &buckets, &runs, &options, &message, slots, permit).await
            {
                tracing::error!("step message on {}: {e}", message.subject);
                eprintln!("dynhost worker: {e}");
                // Refused for good: never delivered again to anyone.
                let _ = message.ack_with(jetstream::AckKind::Term).await;
            }
        });
    }
}

/// Where a worker's steps of one run publish, and what they share.
struct Job {
    context: Arc<RunContext>,
    values: object_store::ObjectStore,
    run_id: String,
    worker: String,
}

/// One message: a batch of steps of one run. Its steps run as slots free
/// (the first takes `permit`); the lease is renewed until the last ends, and
/// the message is acked once every end is stored.
async fn run_message(
    js: &jetstream::Context,
    buckets: &Buckets,
    runs: &tokio::sync::Mutex<std::collections::HashMap<String, Arc<RunContext>>>,
    options: &WorkerOptions,
    message: &jetstream::Message,
    slots: Arc<tokio::sync::Semaphore>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), String> {
    // dynhost.steps.RUN.EPOCH.PLACEMENT
    let parts: Vec<&str> = message.subject.split('.').collect();
    let [_, _, run_id, epoch, _] = parts.as_slice() else {
        return Err(format!("unexpected subject {}", message.subject));
    };
    let batch: StepBatchMsg = wire::decode(&message.payload).map_err(|e| e.to_string())?;
    let context = {
        let mut runs = runs.lock().await;
        let key = format!("{run_id}.{epoch}");
        match runs.get(&key) {
            Some(context) => context.clone(),
            None => {
                let context = Arc::new(load_run(js, buckets, &key, options).await?);
                runs.insert(key, context.clone());
                context
            }
        }
    };
    let redelivered = message.info().map_or(0, |info| info.delivered);
    // Keep the lease while the batch runs.
    let renew = {
        let every = options.nats.lease / 3;
        let message = message.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if message
                    .ack_with(jetstream::AckKind::Progress)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let job = Arc::new(Job {
        context,
        values: buckets.values.clone(),
        run_id: (*run_id).to_owned(),
        worker: options.name.clone(),
    });
    let mut permit = Some(permit);
    let mut tasks = Vec::with_capacity(batch.steps.len());
    for msg in batch.steps {
        if redelivered > 1 {
            eprintln!(
                "dynhost worker `{}`: running {} again (delivery {redelivered}: the worker that had it stopped renewing its lease)",
                options.name,
                crate::key::step_name(
                    &msg.op,
                    &msg.keys
                        .iter()
                        .filter_map(|k| crate::key::MappingKey::parse(k).ok())
                        .collect::<Vec<_>>()
                ),
            );
        }
        let permit = match permit.take() {
            Some(permit) => permit,
            None => slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?,
        };
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let stored = run_step_msg(&job, msg).await;
            // The slot is free once the step ran; its end is stored meanwhile.
            drop(permit);
            match stored {
                Ok(stored) => stored
                    .await
                    .map_err(|_| "the run's event publisher stopped".to_owned())?,
                Err(e) => Err(e),
            }
        }));
    }
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    renew.abort();
    if let Some(e) = first_error {
        return Err(e);
    }
    message.double_ack().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs one step and hands its items and end to the run's publisher; the
/// returned receiver says when the end is stored. A step this worker must
/// refuse (a component the locked plan does not name) ends as a failure.
async fn run_step_msg(
    job: &Arc<Job>,
    msg: StepMsg,
) -> Result<tokio::sync::oneshot::Receiver<Result<(), String>>, String> {
    let context = &job.context;
    let plan = &context.plan;
    let op = plan
        .op_id(&msg.op)
        .ok_or_else(|| format!("the locked plan has no op `{}`", msg.op))?;
    let handle = tokio::runtime::Handle::current();
    let mut values = Values {
        store: job.values.clone(),
        handle: handle.clone(),
    };
    let refusal = if context.digests[op] != msg.component {
        Some(format!(
            "worker `{}` refused the step: it names component {}, the run's locked plan {}",
            job.worker, msg.component, context.digests[op]
        ))
    } else {
        None
    };
    let component = context.components[op].clone();
    tracing::debug!(
        "worker `{}` runs a step of `{}` {:?}",
        job.worker,
        msg.op,
        msg.keys
    );
    let item_tx = context.events.clone();
    let job2 = job.clone();
    let finished = tokio::task::spawn_blocking(move || {
        let job = job2;
        let context = &job.context;
        let request = msg
            .request(&context.plan, &mut values)
            .map_err(|e| e.to_string())?;
        let (step, attempt) = (request.step.clone(), request.attempt);
        let report = match (refusal, component) {
            (Some(reason), _) => StepReport::failed(OpFailure::new(FailureKind::Host, reason)),
            (None, None) => StepReport::failed(OpFailure::new(
                FailureKind::Host,
                "the component is not loaded (a dynhost bug)",
            )),
            (None, Some(component)) => {
                let sink = Box::new(PublishSink {
                    context: context.clone(),
                    items: wire::ItemNumbers::new(&job.run_id, step.clone(), attempt),
                    values: Values {
                        store: values.store.clone(),
                        handle: values.handle.clone(),
                    },
                    tx: item_tx,
                });
                crate::exec::worker::run_one(
                    &context.runtime,
                    &context.plan,
                    &context.strings,
                    &component,
                    &job.run_id,
                    &step,
                    request.inputs,
                    sink,
                )
            }
        };
        FinishedMsg::new(
            &job.run_id,
            &context.plan,
            &step,
            attempt,
            &report,
            &mut values,
        )
    })
    .await
    .map_err(|e| e.to_string())??;
    // The end goes after the step's items, in the same or a later batch;
    // the step counts as done once that batch is stored.
    let (stored_tx, stored) = tokio::sync::oneshot::channel();
    context
        .events
        .send(Outgoing::Finished(finished, stored_tx))
        .await
        .map_err(|_| "the run's event publisher stopped".to_owned())?;
    Ok(stored)
}

/// Sends a running step's items to the publisher task.
struct PublishSink {
    context: Arc<RunContext>,
    items: wire::ItemNumbers,
    values: Values,
    tx: tokio::sync::mpsc::Sender<Outgoing>,
}

impl crate::runtime::EmitSink for PublishSink {
    fn emit(
        &mut self,
        output: usize,
        key: crate::key::MappingKey,
        value: Vec<u8>,
        metadata: Option<Box<str>>,
    ) -> std::time::Duration {
        match self.items.message(
            &self.context.plan,
            output,
            key,
            value,
            metadata,
            &mut self.values,
        ) {
            Ok(msg) => return send_or_wait(&self.tx, Outgoing::Item(msg)),
            Err(e) => tracing::error!("cannot send an item: {e}"),
        }
        std::time::Duration::ZERO
    }
}

/// Queues `event` for the publisher; when the queue ([`EVENT_QUEUE`]) is
/// full, waits for room and returns how long (the step's time limit is
/// extended by it, as for a local worker's full channel). Runs on a
/// blocking thread, never inside the async runtime. A closed queue (the
/// publisher stopped) drops the event; the step's end then fails to send
/// too, and the worker reports that.
fn send_or_wait<T>(tx: &tokio::sync::mpsc::Sender<T>, event: T) -> std::time::Duration {
    match tx.try_send(event) {
        Err(tokio::sync::mpsc::error::TrySendError::Full(event)) => {
            let started = std::time::Instant::now();
            let _ = tx.blocking_send(event);
            started.elapsed()
        }
        Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
            std::time::Duration::ZERO
        }
    }
}

/// Fetches a run's locked plan and components, and loads them.
async fn load_run(
    js: &jetstream::Context,
    buckets: &Buckets,
    key: &str,
    options: &WorkerOptions,
) -> Result<RunContext, String> {
    let text = get_object(&buckets.plans, key).await?;
    let locked = Locked::from_json(&text)?;
    let plan = locked.plan;
    let runtime = Runtime::new(&RuntimeConfig {
        max_instances: u32::try_from(options.max_concurrent.max(1)).unwrap_or(u32::MAX),
        max_memory_bytes: plan.max_memory_bytes(),
        cache_dir: Some(options.cache_dir.join("compiled")),
        max_wasm_stack_bytes: plan.stack_bytes(),
        enable_fuel: plan.ops.iter().any(|op| op.policy.limits.fuel.is_some()),
        fast_compile: false,
    })
    .map_err(|e| e.to_string())?;
    let mut components = Vec::new();
    let mut digests = Vec::new();
    for (op, locked) in plan.ops.iter().zip(&locked.components) {
        let hex = locked.digest.trim_start_matches("sha256:");
        let path = options.cache_dir.join(format!("{hex}.wasm"));
        if !path.is_file() {
            let bytes = get_object(&buckets.components, &format!("sha256-{hex}")).await?;
            if crate::store::hash_bytes(&bytes) != hex {
                return Err(format!(
                    "component of `{}` does not match its digest",
                    op.name
                ));
            }
            std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let component = runtime.load(&path).map_err(|e| e.to_string())?;
        components.push(Some(component));
        digests.push(locked.digest.clone());
    }
    let (events, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    tokio::spawn(publish_events(
        js.clone(),
        format!("dynhost.events.{key}.batch"),
        rx,
    ));
    Ok(RunContext {
        strings: crate::exec::worker::OpStrings::of(&plan),
        plan,
        runtime,
        components,
        digests,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::send_or_wait;
    use std::time::Duration;

    /// A full queue holds the emitting step until the publisher takes an
    /// event, and says how long it waited; nothing is dropped or queued
    /// past the bound.
    #[test]
    fn a_full_event_queue_waits_for_the_publisher() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(2);
        assert_eq!(send_or_wait(&tx, 1), Duration::ZERO);
        assert_eq!(send_or_wait(&tx, 2), Duration::ZERO);
        let publisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            // The third event is not queued past the bound meanwhile.
            let queued = rx.len();
            let got: Vec<u32> = (0..3).map(|_| rx.blocking_recv().unwrap()).collect();
            (queued, got)
        });
        let waited = send_or_wait(&tx, 3);
        assert!(
            waited >= Duration::from_millis(150),
            "waited only {waited:?} for room"
        );
        let (queued, got) = publisher.join().unwrap();
        assert_eq!(queued, 2, "events queued past the bound");
        assert_eq!(got, [1, 2, 3], "an event was lost or reordered");
    }

    /// A stopped publisher does not block the step.
    #[test]
    fn a_closed_event_queue_does_not_block() {
        let (tx, rx) = tokio::sync::mpsc::channel::<u32>(1);
        drop(rx);
        assert_eq!(send_or_wait(&tx, 1), Duration::ZERO);
    }
}
