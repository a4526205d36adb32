//! Every message survives the trip through its bytes, large values go by
//! digest, and a message of another version or for another plan is refused.

use super::*;
use crate::runtime::FailureKind;
use std::collections::HashMap;

#[derive(Default)]
struct MapStore(HashMap<String, Vec<u8>>);

impl BlobStore for MapStore {
    fn put(&mut self, bytes: &[u8]) -> Result<String, String> {
        let digest = format!("sha256:{}", crate::store::hash_bytes(bytes));
        self.0.insert(digest.clone(), bytes.to_vec());
        Ok(digest)
    }

    fn get(&mut self, digest: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(digest)
            .cloned()
            .ok_or_else(|| format!("no value {digest}"))
    }
}

fn plan() -> (tempfile::TempDir, Plan) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("op.wasm"), b"").unwrap();
    let spec = crate::spec::parse(
        &dir.path().join("job.toml"),
        r#"name = "t"
[ops.emit]
component = "op.wasm"
dynamic = ["small", "big"]
[ops.work]
component = "op.wasm"
inputs.v = { map = "emit.small" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work", max_failures = 1 }
"#,
    )
    .unwrap();
    (dir, Plan::build(&spec).unwrap())
}

fn keys(keys: &[&str]) -> KeyPath {
    keys.iter().map(|k| MappingKey::parse(k).unwrap()).collect()
}

/// Keys as a collected item carries them.
fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn a_step_request_round_trips_with_large_values_by_digest() {
    let (_dir, plan) = plan();
    let mut store = MapStore::default();
    let big = vec![7u8; INLINE_MAX + 1];
    let all = plan.op_id("all").unwrap();
    let mut inputs = super::super::worker::Inputs::new();
    inputs.push(InputData::Collected {
        items: [
            (strings(&["a"]), b"1".to_vec()),
            (strings(&["b"]), big.clone()),
        ]
        .into_iter()
        .collect(),
        failed: vec![(keys(&["c"]), OpFailure::new(FailureKind::Trap, "boom"))],
    });
    let request = StepRequest {
        step: StepId::new(all, KeyPath::new()),
        attempt: 2,
        inputs,
    };
    let msg = StepMsg::new("run1", &plan, "sha256:abc", &request, &mut store).unwrap();
    let bytes = encode(&msg);
    assert!(
        bytes.len() < 1024,
        "the large value is not in the message: {} bytes",
        bytes.len()
    );
    let decoded: StepMsg = decode(&bytes).unwrap();
    assert_eq!(decoded, msg);
    assert_eq!(decoded.component, "sha256:abc");
    let back = decoded.request(&plan, &mut store).unwrap();
    assert_eq!(back.step, request.step);
    assert_eq!(back.attempt, 2);
    match &back.inputs[0] {
        InputData::Collected { items, failed } => {
            let items: Vec<_> = items.iter().collect();
            assert_eq!(items[0].0.to_vec(), strings(&["a"]));
            assert_eq!(items[1].1, big.as_slice());
            assert_eq!(failed[0].1.kind, FailureKind::Trap);
        }
        InputData::Single(_) => panic!("collected expected"),
    }
}

#[test]
fn items_and_finished_steps_round_trip_into_events() {
    let (_dir, plan) = plan();
    let mut store = MapStore::default();
    let emit = StepId::new(plan.op_id("emit").unwrap(), KeyPath::new());
    let item = Emitted {
        step: emit.clone(),
        output: 1,
        key: MappingKey::parse("k1").unwrap(),
        value: b"{\"n\":1}".to_vec(),
        metadata: Some(r#"[{"label":"rows","kind":"integer","value":3}]"#.into()),
    };
    let msg = ItemMsg::new("run1", &plan, 1, 4, &item, &mut store).unwrap();
    assert_eq!(msg.output, "big");
    let event = decode::<ItemMsg>(&encode(&msg))
        .unwrap()
        .event(&plan, &mut store)
        .unwrap();
    let StepEvent::Item {
        attempt,
        seq,
        item: back,
    } = event
    else {
        panic!("an item");
    };
    assert_eq!((attempt, seq, back.output), (1, 4, 1));
    assert_eq!((back.key.as_str(), back.value), ("k1", item.value.clone()));
    assert_eq!(back.metadata, item.metadata);

    let report = StepReport {
        outcome: Ok(vec![1u8; INLINE_MAX * 2]),
        no_value: false,
        metadata: Some("[]".into()),
        outputs: vec![NamedValue {
            name: "size".into(),
            value: Some(b"7".to_vec()),
            metadata: None,
        }],
        stdout: "out".into(),
        stderr: String::new(),
        log: "[info] hi\n".into(),
        stats: StepStats {
            wall: Duration::from_millis(1500),
            emitted_items: 2,
            ..StepStats::default()
        },
    };
    let msg = FinishedMsg::new("run1", &plan, &emit, 1, &report, &mut store).unwrap();
    let event = decode::<FinishedMsg>(&encode(&msg))
        .unwrap()
        .event(&plan, &mut store)
        .unwrap();
    let StepEvent::Finished {
        step,
        attempt,
        report: back,
    } = event
    else {
        panic!("a finished step");
    };
    assert_eq!((step, attempt), (emit.clone(), 1));
    assert_eq!(back.outcome, report.outcome);
    assert_eq!(back.stats.emitted_items, 2);
    assert_eq!(back.stats.wall, Duration::from_millis(1500));
    assert_eq!(back.outputs[0].value.as_deref(), Some(&b"7"[..]));
    assert_eq!(
        (back.stdout.as_str(), back.log.as_str()),
        ("out", "[info] hi\n")
    );

    let failed = StepReport::failed(OpFailure::new(FailureKind::Timeout, "too slow"));
    let msg = FinishedMsg::new("run1", &plan, &emit, 3, &failed, &mut store).unwrap();
    let StepEvent::Finished { report, .. } = decode::<FinishedMsg>(&encode(&msg))
        .unwrap()
        .event(&plan, &mut store)
        .unwrap()
    else {
        panic!("a finished step");
    };
    assert_eq!(report.outcome.unwrap_err().kind, FailureKind::Timeout);
}

#[test]
fn other_versions_other_plans_and_garbage_are_refused() {
    let (_dir, plan) = plan();
    let mut store = MapStore::default();
    let mut msg = StepMsg {
        v: WIRE_VERSION + 1,
        run_id: "r".into(),
        op: "work".into(),
        component: "sha256:x".into(),
        keys: vec!["k".into()],
        attempt: 1,
        inputs: Vec::new(),
    };
    assert_eq!(
        decode::<StepMsg>(&encode(&msg)).unwrap_err(),
        WireError::Version {
            found: WIRE_VERSION + 1
        }
    );
    msg.v = WIRE_VERSION;
    msg.op = "gone".into();
    let err = decode::<StepMsg>(&encode(&msg))
        .unwrap()
        .request(&plan, &mut store)
        .unwrap_err();
    assert!(err.to_string().contains("no op `gone`"), "{err}");
    msg.op = "work".into();
    msg.keys = vec!["no spaces".into()];
    assert!(msg.request(&plan, &mut store).is_err());
    assert!(matches!(
        decode::<StepMsg>(b"{not json"),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn a_collect_of_many_small_items_is_not_one_giant_message() {
    let (_dir, plan) = plan();
    let mut store = MapStore::default();
    let all = plan.op_id("all").unwrap();
    let items = (0..20_000)
        .map(|i| (vec![format!("k{i}")], format!("{i}").into_bytes()))
        .collect();
    let mut inputs = super::super::worker::Inputs::new();
    inputs.push(InputData::Collected {
        items,
        failed: Vec::new(),
    });
    let request = StepRequest {
        step: StepId::new(all, KeyPath::new()),
        attempt: 1,
        inputs,
    };
    let bytes = encode(&StepMsg::new("r", &plan, "sha256:x", &request, &mut store).unwrap());
    assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    let back = decode::<StepMsg>(&bytes)
        .unwrap()
        .request(&plan, &mut store)
        .unwrap();
    match &back.inputs[0] {
        InputData::Collected { items, .. } => {
            assert_eq!(items.len(), 20_000);
            let (keys, value) = items.iter().last().unwrap();
            assert_eq!(keys.to_vec(), strings(&["k19999"]));
            assert_eq!(value, b"19999");
        }
        InputData::Single(_) => panic!("collected expected"),
    }
}

#[test]
fn batches_joined_from_written_parts_read_back_as_batch_messages() {
    let step = StepMsg {
        v: WIRE_VERSION,
        run_id: "r".into(),
        op: "work".into(),
        component: "sha256:x".into(),
        keys: vec!["k".into()],
        attempt: 1,
        inputs: vec![InputMsg::Single(Blob::Inline(b"1".to_vec()))],
    };
    let steps = [encode(&step), encode(&step)];
    let read: StepBatchMsg = decode(&batch(&[("steps", &steps)])).unwrap();
    assert_eq!(read.steps, [step.clone(), step]);
    let empty: EventBatchMsg = decode(&batch(&[("items", &[]), ("finished", &[])])).unwrap();
    assert!(empty.items.is_empty() && empty.finished.is_empty());
}

/// A worker checks the keys of collected items it is sent, though it hands
/// them to the guest as strings: a message with an invalid key is refused.
#[test]
fn a_collected_item_with_an_invalid_key_is_refused() {
    let (_dir, plan) = plan();
    let mut store = MapStore::default();
    let mut inputs = super::super::worker::Inputs::new();
    inputs.push(InputData::Collected {
        items: [(strings(&["zzkeyzz"]), b"1".to_vec())]
            .into_iter()
            .collect(),
        failed: Vec::new(),
    });
    let request = StepRequest {
        step: StepId::new(plan.op_id("all").unwrap(), KeyPath::new()),
        attempt: 1,
        inputs,
    };
    let text = String::from_utf8(encode(
        &StepMsg::new("r", &plan, "sha256:x", &request, &mut store).unwrap(),
    ))
    .unwrap();
    assert!(text.contains("zzkeyzz"), "{text}");
    let tampered: StepMsg = decode(text.replace("zzkeyzz", "a/b").as_bytes()).unwrap();
    let err = tampered.request(&plan, &mut store).unwrap_err();
    assert!(err.to_string().contains("invalid key"), "{err}");
}
