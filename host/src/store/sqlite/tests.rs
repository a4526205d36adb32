//! SQLite store: round trips, inline and shared values, streamed items,
//! upgrades from version 1, and damaged files.

use super::*;
use crate::key::KeyPath;
use crate::store::{InputSummary, StepRecord, StepStatus};

fn summary(heads: &str, values: &str) -> InputSummary {
    InputSummary {
        heads: Arc::from(heads),
        values: values.into(),
    }
}

fn item(key: &str, value: &[u8]) -> StoredItem {
    StoredItem {
        output: "result".into(),
        key: key.into(),
        value: Arc::from(value),
        metadata: None,
    }
}

fn record(op: &str, key: &str, status: StepStatus) -> StepRecord {
    StepRecord {
        op: op.into(),
        // (An empty key: no keys; callers outside a map pass that.)
        keys: (!key.is_empty())
            .then(|| crate::key::MappingKey::parse(key).unwrap())
            .into_iter()
            .collect(),
        position: None,
        status,
        attempts: 1,
        wall_secs: 0.1,
        failure_kind: None,
        failure_message: None,
        peak_memory_bytes: 1,
        emitted_items: 1,
        emitted_bytes: 2,
        fuel_used: None,
        input_hash: Some(Digest([1; 32])),
        memo_key: None,
        memoized: false,
        output: Some(Arc::from(&b"same"[..])),
        metadata: None,
        no_value: false,
        services: None,
        outputs: Vec::new(),
        items: vec![item("x", b"v")],
        items_streamed: false,
        stdout: String::new(),
        stderr: String::new(),
        log: String::new(),
        inputs: None,
        executed: true,
    }
}

#[test]
fn steps_round_trip_and_values_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let run = RunRecord {
        id: "r1".into(),
        job: "j".into(),
        job_file: "job.toml".into(),
        job_hash: "h".into(),
        config: "{}".into(),
        plan: String::new(),
    };
    store.begin_run(&run).unwrap();
    store
        .record(
            "r1",
            &[
                Write::Step(Box::new(record("a", "k1", StepStatus::Succeeded))),
                Write::Step(Box::new(record("a", "k2", StepStatus::Succeeded))),
                Write::Step(Box::new(record("a", "k3", StepStatus::Failed))),
            ],
        )
        .unwrap();
    store.finish_run("r1", RunStatus::Failed).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(
        (runs[0].succeeded, runs[0].failed, runs[0].status.as_str()),
        (2, 1, "failed")
    );
    let prior = store.successes("r1").unwrap();
    assert_eq!(prior.len(), 2);
    assert_eq!(&*prior[0].output, b"same");
    assert_eq!(prior[0].items[0].key, "x");
    assert_eq!(blob_count(&store), 0, "small values stay in their rows");
    // Large values go to `blobs`, once however many steps return them.
    let big = vec![7u8; INLINE_MAX + 1];
    let mut writes = Vec::new();
    for key in ["k4", "k5"] {
        let mut r = record("a", key, StepStatus::Succeeded);
        r.output = Some(Arc::from(big.as_slice()));
        r.items = vec![item("y", &big)];
        writes.push(Write::Step(Box::new(r)));
    }
    store.record("r1", &writes).unwrap();
    assert_eq!(blob_count(&store), 1, "identical values share one blob");
    let prior = store.successes("r1").unwrap();
    let k5 = prior.iter().find(|p| p.keys == ["k5"]).unwrap();
    assert_eq!(&*k5.output, big.as_slice());
    assert_eq!(&*k5.items[0].value, big.as_slice());
    let empty = {
        let mut r = record("a", "k6", StepStatus::Succeeded);
        r.output = Some(Arc::from(&b""[..]));
        r
    };
    store.record("r1", &[Write::Step(Box::new(empty))]).unwrap();
    let prior = store.successes("r1").unwrap();
    let k6 = prior.iter().find(|p| p.keys == ["k6"]).unwrap();
    assert!(
        k6.output.is_empty(),
        "an empty value is a value, not a missing one"
    );
}

fn blob_count(store: &SqliteStore) -> i64 {
    one(store, "SELECT count(*) FROM blobs")
}

/// The first column of the one row `sql` returns, packed steps unpacked first.
fn one<T: rusqlite::types::FromSql>(store: &SqliteStore, sql: &str) -> T {
    store.unpack_all().unwrap();
    raw(store, sql)
}

/// [`one`] as the file holds it now (packs left as they are).
fn raw<T: rusqlite::types::FromSql>(store: &SqliteStore, sql: &str) -> T {
    store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_version_1_store_is_upgraded_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    {
        // The version 1 tables, as the previous release created them.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, job_file TEXT NOT NULL,
               job_hash TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL);
             CREATE TABLE steps (run_id TEXT NOT NULL, op TEXT NOT NULL, keys TEXT NOT NULL,
               status TEXT NOT NULL, attempts INTEGER NOT NULL, wall_secs REAL NOT NULL,
               failure_kind TEXT, failure_message TEXT, peak_memory_bytes INTEGER NOT NULL,
               emitted_items INTEGER NOT NULL, emitted_bytes INTEGER NOT NULL, fuel_used INTEGER,
               input_hash TEXT, inputs TEXT, output_hash TEXT, memo_key TEXT, stdout TEXT NOT NULL,
               stderr TEXT NOT NULL, log TEXT NOT NULL, finished_at REAL NOT NULL,
               PRIMARY KEY (run_id, op, keys));
             CREATE TABLE attempts (run_id TEXT NOT NULL, op TEXT NOT NULL, keys TEXT NOT NULL,
               status TEXT NOT NULL, finished_at REAL NOT NULL);
             CREATE TABLE items (run_id TEXT NOT NULL, op TEXT NOT NULL, keys TEXT NOT NULL,
               output TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, value_hash TEXT NOT NULL,
               PRIMARY KEY (run_id, op, keys, output, seq));
             CREATE TABLE blobs (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL);
             INSERT INTO runs VALUES ('old', 'j', 'job.toml', 'h', 0, 1, 'succeeded');
             INSERT INTO blobs VALUES ('h1', x'6f6c64');
             INSERT INTO steps VALUES ('old', 'emit', '[]', 'succeeded', 1, 0, NULL, NULL, 0, 1, 3,
               NULL, 'in', NULL, 'h1', 'abababababababababababababababababababababababababababababababab', '', '', '', 1);
             INSERT INTO items VALUES ('old', 'emit', '[]', 'result', 0, 'a', 'h1');",
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let old = store.successes("old").unwrap();
    assert_eq!(&*old[0].output, b"old");
    assert_eq!(
        (old[0].items[0].key.as_str(), &*old[0].items[0].value),
        ("a", &b"old"[..])
    );
    store
        .record(
            "old",
            &[Write::Step(Box::new(record(
                "a",
                "k1",
                StepStatus::Succeeded,
            )))],
        )
        .unwrap();
    assert_eq!(store.successes("old").unwrap().len(), 2);
    assert!(
        store.memoized(&Digest([0xab; 32])).unwrap().is_some(),
        "a step stored before schema 11 is still found by `cache = true`"
    );
    let version: String = one(
        &store,
        "SELECT value FROM meta WHERE key = 'schema_version'",
    );
    assert_eq!(version, SCHEMA_VERSION.to_string());
}

/// A step's input summary reads back whole (name, source and kind from
/// its op's heads, stored once per run and op; size and value its own), in
/// both the plain and the full insert; heads that change (a resumed job
/// renamed an input) get a row of their own and earlier steps keep theirs.
#[test]
fn input_summaries_read_back_whole_with_heads_stored_once_per_op() {
    let (_dir, mut store) = new_run();
    let heads: Arc<str> =
        Arc::from(r#"[{"name":"v","from":"item of `e.result`","kind":"single"}]"#);
    let step = |key: &str, hex: &str, stdout: &str| {
        let mut r = record("a", key, StepStatus::Succeeded);
        r.inputs = Some(InputSummary {
            heads: heads.clone(),
            values: format!(r#"[{{"hex":"{hex}"}}]"#),
        });
        r.stdout = stdout.into();
        Write::Step(Box::new(r))
    };
    // Two commits, a plain step and one with output (the full insert).
    store
        .record("r1", &[step("k1", "3031", ""), step("k2", "ff", "out")])
        .unwrap();
    store.record("r1", &[step("k3", "", "")]).unwrap();
    assert_eq!(one::<i64>(&store, "SELECT count(*) FROM op_inputs"), 1);
    let read = |store: &SqliteStore, key: &str| -> serde_json::Value {
        let row = store.step("r1", "a", &[key.to_owned()]).unwrap().unwrap();
        serde_json::from_str(row.inputs.as_deref().unwrap()).unwrap()
    };
    let whole = |bytes: usize, hex: &str, name: &str| {
        serde_json::json!([{"name": name, "from": "item of `e.result`", "kind": "single",
                            "bytes": bytes, "hex": hex}])
    };
    assert_eq!(read(&store, "k1"), whole(2, "3031", "v"));
    assert_eq!(read(&store, "k2"), whole(1, "ff", "v"));
    assert_eq!(read(&store, "k3"), whole(0, "", "v"));
    let listed = store.steps("r1").unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(listed[0].inputs.as_deref().unwrap()).unwrap(),
        whole(2, "3031", "v")
    );
    // The same op with other heads: a new row; k1 keeps the old heads.
    let renamed: Arc<str> =
        Arc::from(r#"[{"name":"w","from":"item of `e.result`","kind":"single"}]"#);
    let mut r = record("a", "k4", StepStatus::Succeeded);
    r.inputs = Some(InputSummary {
        heads: renamed,
        values: r#"[{"hex":"00"}]"#.into(),
    });
    store.record("r1", &[Write::Step(Box::new(r))]).unwrap();
    assert_eq!(one::<i64>(&store, "SELECT count(*) FROM op_inputs"), 2);
    assert_eq!(read(&store, "k4"), whole(1, "00", "w"));
    assert_eq!(read(&store, "k1"), whole(2, "3031", "v"));
    // A row from before schema 12 (the whole summary in `inputs`) reads as stored.
    store
        .conn
        .execute(
            r#"UPDATE steps SET input_heads = NULL, inputs = '[{"name":"old"}]' WHERE keys = '["k1"]'"#,
            [],
        )
        .unwrap();
    assert_eq!(read(&store, "k1"), serde_json::json!([{"name": "old"}]));
}

/// Stores before schema 12 hold input hashes and memo keys as hex text:
/// resume and `cache = true` lookups still read and match them.
#[test]
fn hashes_stored_as_hex_text_before_schema_12_still_match() {
    let (_dir, mut store) = new_run();
    let mut step = record("a", "k1", StepStatus::Succeeded);
    step.memoized = true;
    store.record("r1", &[Write::Step(Box::new(step))]).unwrap();
    let (input, memo) = (Digest([0x3c; 32]), Digest([0xd4; 32]));
    store
        .conn
        .execute(
            "UPDATE steps SET input_hash = ?1, memo_key = ?2",
            params![input.hex(), memo.hex().to_uppercase()],
        )
        .unwrap();
    let prior = store.successes("r1").unwrap();
    assert_eq!(prior[0].input_hash, Some(input));
    assert_eq!(prior[0].memo_key, Some(memo));
    store
        .conn
        .execute("UPDATE steps SET memo_key = ?1", [memo.hex()])
        .unwrap();
    let found = store
        .memoized(&memo)
        .unwrap()
        .expect("found by its hex key");
    assert_eq!(found.input_hash, Some(input));
    // Something that is neither reads as no hash: the step runs again.
    store
        .conn
        .execute("UPDATE steps SET input_hash = 'in', memo_key = x'0102'", [])
        .unwrap();
    let prior = store.successes("r1").unwrap();
    assert_eq!((prior[0].input_hash, prior[0].memo_key), (None, None));
    // The decoding itself: either case, whole pairs of hex digits only.
    assert_eq!(crate::store::unhex("0aFf"), Some(vec![0x0a, 0xff]));
    for bad in ["abc", "zz", "+f"] {
        assert_eq!(crate::store::unhex(bad), None, "{bad}");
    }
    assert_eq!(Digest::from_hex(&input.hex()[..62]), None);
}

/// Only steps of `cache = true` ops are found by memo key (and only they
/// are in the index); every step keeps its memo key for resume.
#[test]
fn only_memoized_steps_are_found_by_memo_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let (m1, m2) = (Digest([0xa1; 32]), Digest([0xa2; 32]));
    let mut cached = record("a", "k1", StepStatus::Succeeded);
    cached.memo_key = Some(m1);
    cached.memoized = true;
    let mut plain = record("b", "k1", StepStatus::Succeeded);
    plain.memo_key = Some(m2);
    store
        .record(
            "r",
            &[Write::Step(Box::new(cached)), Write::Step(Box::new(plain))],
        )
        .unwrap();
    let found = store.memoized(&m1).unwrap().expect("memoized step found");
    assert_eq!(found.op, "a");
    assert_eq!(found.memo_key, Some(m1));
    assert_eq!(found.input_hash, Some(Digest([1; 32])));
    assert!(store.memoized(&m2).unwrap().is_none());
    let prior = store.successes("r").unwrap();
    let b = prior.iter().find(|p| p.op == "b").unwrap();
    assert_eq!(b.memo_key, Some(m2), "resume still compares it");
    // Kept as 32 bytes, not 64 hex characters.
    assert_eq!(
        one::<Vec<u8>>(&store, "SELECT memo_key FROM steps WHERE op = 'b'"),
        m2.0
    );
    let index: String = one(
        &store,
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'steps_memo'",
    );
    assert!(index.contains("WHERE memoized = 1"), "{index}");
    let plan: String = store
        .conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT 1 FROM steps s WHERE s.memo_key IN (x'a1', 'a1') AND s.memoized = 1",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("steps_memo"), "lookup uses the index: {plan}");
}

#[test]
fn streamed_items_add_up_in_order_and_a_rerun_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let items = |first_seq: u64, keys: &[&str]| {
        Write::Items(super::super::ItemsRecord {
            op: "emit".into(),
            keys: KeyPath::new(),
            first_seq,
            items: keys.iter().map(|k| item(k, k.as_bytes())).collect(),
        })
    };
    let mut done = record("emit", "", StepStatus::Succeeded);
    done.keys = KeyPath::new();
    done.items = vec![];
    done.items_streamed = true;
    let keys_of = |store: &SqliteStore| -> Vec<String> {
        let prior = store.successes("r1").unwrap();
        prior[0].items.iter().map(|i| i.key.clone()).collect()
    };
    store.record("r1", &[items(0, &["a", "b"])]).unwrap();
    store.record("r1", &[items(2, &["c"])]).unwrap();
    assert!(
        store.successes("r1").unwrap().is_empty(),
        "items alone are not a success"
    );
    store
        .record("r1", &[Write::Step(Box::new(done.clone()))])
        .unwrap();
    assert_eq!(keys_of(&store), ["a", "b", "c"]);
    store
        .record(
            "r1",
            &[items(0, &["z"]), Write::Step(Box::new(done.clone()))],
        )
        .unwrap();
    assert_eq!(
        keys_of(&store),
        ["z"],
        "a rerun's items replace the old ones"
    );
    done.emitted_items = 0;
    store.record("r1", &[Write::Step(Box::new(done))]).unwrap();
    assert!(
        keys_of(&store).is_empty(),
        "a rerun that emits nothing leaves no old items behind"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
    let err = SqliteStore::open(&path)
        .err()
        .expect("garbage must not open");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x42u8; 4096],
        "the file was modified"
    );
}

#[test]
fn unknown_runs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let err = store.run("nope").unwrap_err();
    assert!(err.to_string().contains("no run `nope`"), "{err}");
}

#[test]
fn a_database_of_another_program_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'mine');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = SqliteStore::open(&path).err().expect("refused");
    assert!(
        matches!(&error, StoreError::Foreign { tables, .. } if tables == &["notes"]),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the foreign file changed"
    );
    assert!(
        !dir.path().join("runs.db-wal").exists(),
        "a WAL file was created"
    );
}

#[test]
fn a_store_of_a_newer_dynhost_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    }
    let error = SqliteStore::open(&path).err().expect("refused");
    assert!(
        matches!(error, StoreError::Newer { version: 99, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade dynhost"), "{error}");
}

#[test]
fn a_store_that_cannot_be_created_says_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let error = SqliteStore::open(&file.join("sub/runs.db"))
        .err()
        .expect("refused");
    assert!(matches!(error, StoreError::Unwritable { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("a-file") && message.contains("DYNHOST_HOME"),
        "{message}"
    );
}

#[test]
fn metadata_and_no_value_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let mut r = record("a", "k1", StepStatus::Succeeded);
    r.metadata = Some(r#"[{"label":"rows","kind":"integer","value":3}]"#.into());
    r.no_value = true;
    r.output = Some(Arc::from(&b""[..]));
    let mut with = item("x", b"v");
    with.metadata = Some(Arc::from(r#"[{"label":"p","kind":"path","value":"/a"}]"#));
    r.items = vec![with, item("y", b"w")];
    r.outputs = vec![
        StoredOutput {
            name: "size".into(),
            value: Some(Arc::from(&[9u8; INLINE_MAX + 1][..])),
            metadata: None,
        },
        StoredOutput {
            name: "unset".into(),
            value: None,
            metadata: None,
        },
    ];
    store.record("r1", &[Write::Step(Box::new(r))]).unwrap();
    let prior = store.successes("r1").unwrap();
    assert!(prior[0].no_value);
    assert_eq!(
        prior[0].metadata.as_deref(),
        Some(r#"[{"label":"rows","kind":"integer","value":3}]"#)
    );
    let metadata: Vec<Option<&str>> = prior[0]
        .items
        .iter()
        .map(|i| i.metadata.as_deref())
        .collect();
    assert_eq!(
        metadata,
        [Some(r#"[{"label":"p","kind":"path","value":"/a"}]"#), None]
    );
    let outputs: Vec<(&str, usize)> = prior[0]
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.value.as_ref().map_or(0, |v| v.len())))
        .collect();
    assert_eq!(
        outputs,
        [("size", INLINE_MAX + 1)],
        "unset outputs have no row"
    );
    let rows = store.steps("r1").unwrap();
    assert!(rows[0].no_value && rows[0].metadata.is_some());
    let listed = store.item_metadata("r1", "a", &["k1".to_owned()]).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1.as_str()),
        ("result", "x")
    );
}

#[test]
fn step_counts_and_pages_follow_replaced_and_tolerated_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    let run = RunRecord {
        id: "r1".into(),
        job: "j".into(),
        job_file: "job.toml".into(),
        job_hash: "h".into(),
        config: "{}".into(),
        plan: String::new(),
    };
    store.begin_run(&run).unwrap();
    let at = |key: &str, position: u32, status: StepStatus| {
        let mut r = record("a", key, status);
        r.position = Some(position);
        Write::Step(Box::new(r))
    };
    // Emitted z, y, x: pages follow emission order, not key order.
    store
        .record(
            "r1",
            &[
                at("z", 0, StepStatus::Succeeded),
                at("y", 1, StepStatus::Failed),
                at("x", 2, StepStatus::Failed),
            ],
        )
        .unwrap();
    let counts = |store: &SqliteStore| {
        let mut c: Vec<(String, bool, u64)> = store
            .step_counts("r1")
            .unwrap()
            .into_iter()
            .map(|c| (c.status, c.tolerated, c.n))
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        counts(&store),
        [("failed".into(), false, 2), ("succeeded".into(), false, 1)]
    );
    // A resume replaces y's row with a success; a collect tolerates x; in
    // the same commit a new step w fails and is tolerated, and v is written
    // twice (counts are taken per commit, adjusted per row).
    store
        .record(
            "r1",
            &[
                at("y", 1, StepStatus::Succeeded),
                Write::Tolerated(vec![("a".into(), vec!["x".into()])]),
                at("w", 3, StepStatus::Failed),
                Write::Tolerated(vec![("a".into(), vec!["w".into()])]),
                at("v", 4, StepStatus::Failed),
                at("v", 4, StepStatus::Succeeded),
            ],
        )
        .unwrap();
    assert_eq!(
        counts(&store),
        [("failed".into(), true, 2), ("succeeded".into(), false, 3)]
    );
    let runs = store.runs().unwrap();
    assert_eq!(
        (runs[0].succeeded, runs[0].failed, runs[0].tolerated),
        (3, 0, 2)
    );
    let keys = |page: &crate::store::StepPage| -> Vec<String> {
        page.steps.iter().map(|s| s.keys[0].clone()).collect()
    };
    let all = store
        .step_page("r1", "a", &crate::store::StepFilter::default(), 2)
        .unwrap();
    assert_eq!(keys(&all), ["z", "y"]);
    let rest = store
        .step_page(
            "r1",
            "a",
            &crate::store::StepFilter {
                after: all.next.clone(),
                ..Default::default()
            },
            2,
        )
        .unwrap();
    assert_eq!(keys(&rest), ["x", "w"]);
    let failed = store
        .step_page(
            "r1",
            "a",
            &crate::store::StepFilter {
                status: Some("failed".into()),
                ..Default::default()
            },
            10,
        )
        .unwrap();
    assert_eq!(keys(&failed), ["x", "w"]);
    let prefixed = store
        .step_page(
            "r1",
            "a",
            &crate::store::StepFilter {
                key: Some("y".into()),
                ..Default::default()
            },
            10,
        )
        .unwrap();
    assert_eq!(keys(&prefixed), ["y"]);
    // The run's start and each commit (its steps, its tolerated marks)
    // are events, in order.
    assert_eq!(store.cursor().unwrap(), 1 + 1 + 2);
}

/// A new store in a temporary directory with run `r1` begun (by this
/// handle: a new run).
fn new_run() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    begin(&mut store, "r1");
    (dir, store)
}

fn begin(store: &mut SqliteStore, id: &str) {
    store
        .begin_run(&RunRecord {
            id: id.into(),
            job: "j".into(),
            job_file: "job.toml".into(),
            job_hash: "h".into(),
            config: "{}".into(),
            plan: String::new(),
        })
        .unwrap();
}

/// Items go in several rows per statement: batches longer and shorter than
/// one statement, small and blob values and metadata all come back in
/// emission order, each with its own value.
#[test]
fn many_streamed_items_come_back_in_order_with_their_values() {
    let (_dir, mut store) = new_run();
    let value = |i: usize| -> Vec<u8> {
        if i.is_multiple_of(3) {
            format!("{i:0>80}").into_bytes() // over INLINE_MAX: a blob
        } else {
            i.to_string().into_bytes()
        }
    };
    let stored = |i: usize| StoredItem {
        output: if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
        key: format!("k{i}"),
        value: Arc::from(value(i)),
        metadata: i
            .is_multiple_of(5)
            .then(|| Arc::from(format!("[{i}]").as_str())),
    };
    // 37 items (two statements of 16 and five single rows), then 3 more.
    let mut first = 0;
    for len in [37, 3] {
        let items = (first..first + len).map(stored).collect();
        store
            .record(
                "r1",
                &[Write::Items(super::super::ItemsRecord {
                    op: "emit".into(),
                    keys: KeyPath::new(),
                    first_seq: first as u64,
                    items,
                })],
            )
            .unwrap();
        first += len;
    }
    let mut done = record("emit", "", StepStatus::Succeeded);
    done.keys = KeyPath::new();
    done.items = vec![];
    done.items_streamed = true;
    done.emitted_items = 40;
    store.record("r1", &[Write::Step(Box::new(done))]).unwrap();
    let prior = store.successes("r1").unwrap();
    // Read back per output, in emission order within each.
    let mut got: Vec<(String, String, Vec<u8>, Option<String>)> = prior[0]
        .items
        .iter()
        .map(|i| {
            (
                i.output.to_string(),
                i.key.clone(),
                i.value.to_vec(),
                i.metadata.as_deref().map(str::to_owned),
            )
        })
        .collect();
    let mut want: Vec<_> = (0..40)
        .map(|i| {
            let s = stored(i);
            (
                s.output.to_string(),
                s.key,
                s.value.to_vec(),
                s.metadata.as_deref().map(str::to_owned),
            )
        })
        .collect();
    want.sort_by_key(|(output, key, ..)| (output.clone(), key[1..].parse::<u32>().unwrap()));
    assert_eq!(got.len(), 40);
    let order: Vec<_> = got
        .iter()
        .map(|(o, k, ..)| (o.clone(), k.clone()))
        .collect();
    got.sort_by_key(|(output, key, ..)| (output.clone(), key[1..].parse::<u32>().unwrap()));
    assert_eq!(got, want);
    assert_eq!(
        order,
        want.iter()
            .map(|(o, k, ..)| (o.clone(), k.clone()))
            .collect::<Vec<_>>(),
        "items come back in emission order"
    );
}

/// A new run's first attempt of a step skips the delete of old items; a
/// retry in the same run, or the same run resumed by another handle, still
/// drops the items an earlier attempt streamed.
#[test]
fn items_of_an_earlier_attempt_are_dropped_in_new_and_resumed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let streamed = |keys: &[&str]| {
        Write::Items(super::super::ItemsRecord {
            op: "emit".into(),
            keys: KeyPath::new(),
            first_seq: 0,
            items: keys.iter().map(|k| item(k, k.as_bytes())).collect(),
        })
    };
    let done = |attempts: u32| {
        let mut r = record("emit", "", StepStatus::Succeeded);
        r.keys = KeyPath::new();
        r.items = vec![];
        r.items_streamed = true;
        r.emitted_items = 0;
        r.attempts = attempts;
        Write::Step(Box::new(r))
    };
    let items = |store: &SqliteStore| -> i64 { one(store, "SELECT count(*) FROM items") };
    // A new run: attempt 1 streams and fails, attempt 2 emits nothing.
    let mut store = SqliteStore::open(&path).unwrap();
    begin(&mut store, "r1");
    store.record("r1", &[streamed(&["a", "b"])]).unwrap();
    store.record("r1", &[done(2)]).unwrap();
    assert_eq!(items(&store), 0, "the retry dropped attempt 1's items");
    // The same run resumed by another process: its attempt 1 (of this
    // process) emits nothing, but the killed process had streamed items.
    store.record("r1", &[streamed(&["c"])]).unwrap();
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    begin(&mut store, "r1");
    store.record("r1", &[done(1)]).unwrap();
    assert_eq!(
        items(&store),
        0,
        "the resume dropped the killed run's items"
    );
}

/// A step recorded again (a resume rerunning it) replaces its row; the row
/// it replaced is kept in `attempts`, so every outcome is on record.
#[test]
fn a_replaced_step_keeps_its_earlier_outcome_in_attempts() {
    let (_dir, mut store) = new_run();
    store
        .record(
            "r1",
            &[
                Write::Step(Box::new(record("a", "k1", StepStatus::Failed))),
                Write::Step(Box::new(record("a", "k2", StepStatus::Succeeded))),
            ],
        )
        .unwrap();
    assert_eq!(
        one::<i64>(&store, "SELECT count(*) FROM attempts"),
        0,
        "a step's first outcome is its row"
    );
    store
        .record(
            "r1",
            &[Write::Step(Box::new(record(
                "a",
                "k1",
                StepStatus::Succeeded,
            )))],
        )
        .unwrap();
    let earlier: (String, String, String) = store
        .conn
        .query_row("SELECT op, keys, status FROM attempts", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(earlier, ("a".into(), r#"["k1"]"#.into(), "failed".into()));
    assert_eq!(
        one::<String>(&store, r#"SELECT status FROM steps WHERE keys = '["k1"]'"#),
        "succeeded"
    );
}

/// Most steps take the shorter insert (no failure, captured output,
/// metadata...); its row holds the same as the full insert writes.
#[test]
fn a_plain_steps_row_matches_the_full_inserts() {
    let (_dir, mut store) = new_run();
    let step = |key: &str, stdout: &str| {
        let mut r = record("a", key, StepStatus::Succeeded);
        r.position = Some(7);
        r.memo_key = Some(Digest([7; 32]));
        r.memoized = true;
        r.inputs = Some(summary("[]", "[]"));
        r.wall_secs = 0.25;
        r.peak_memory_bytes = 3;
        r.emitted_items = 4;
        r.emitted_bytes = 5;
        r.attempts = 2;
        r.stdout = stdout.into();
        Write::Step(Box::new(r))
    };
    // `k2` prints: the full insert.
    store
        .record("r1", &[step("k1", ""), step("k2", "out")])
        .unwrap();
    store.unpack_all().unwrap();
    let row = |key: &str| -> Vec<rusqlite::types::Value> {
        store
            .conn
            .query_row(
                "SELECT run_id, op, status, attempts, wall_secs, failure_kind, failure_message,
                   peak_memory_bytes, emitted_items, emitted_bytes, fuel_used, input_hash, inputs,
                   output_hash, output, memo_key, stderr, log, tolerated, metadata, no_value,
                   position, services, memoized, input_heads
                 FROM steps WHERE keys = ?1",
                [format!(r#"["{key}"]"#)],
                |r| (0..25).map(|i| r.get(i)).collect(),
            )
            .unwrap()
    };
    assert_eq!(row("k1"), row("k2"));
    assert_eq!(
        one::<String>(&store, r#"SELECT stdout FROM steps WHERE keys = '["k1"]'"#),
        ""
    );
}

/// Plain steps go in several rows per statement (a resumed run) or many to
/// a pack (a new run); a step recorded again replaces its row (in a group,
/// which falls back to one by one; or when its packs are unpacked), the rest
/// all recorded, with the counts right either way.
#[test]
fn plain_steps_in_groups_are_all_recorded_and_a_repeat_replaces_its_row() {
    for resumed in [true, false] {
        plain_steps_recorded_twice(resumed);
    }
}

fn plain_steps_recorded_twice(resumed: bool) {
    let (dir, mut store) = new_run();
    if resumed {
        // Another handle recording into an existing run: rows at once.
        store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
        begin(&mut store, "r1");
    }
    let plain = |key: String, status: StepStatus| {
        let mut r = record("a", &key, status);
        r.items = vec![];
        r.items_streamed = true;
        r.position = key[1..].parse().ok();
        Write::Step(Box::new(r))
    };
    // 19 steps: two full groups and three left for the end of the commit.
    let first: Vec<Write> = (0..19)
        .map(|i| plain(format!("k{i}"), StepStatus::Succeeded))
        .collect();
    store.record("r1", &first).unwrap();
    let count = |store: &SqliteStore, sql: &str| raw::<i64>(store, sql);
    let (rows, packs) = if resumed { (19, 0) } else { (0, 1) };
    assert_eq!(count(&store, "SELECT count(*) FROM steps"), rows);
    assert_eq!(count(&store, "SELECT count(*) FROM step_packs"), packs);
    // A group of 8 with `k3` again (say, the same step recorded anew).
    let again: Vec<Write> = (16..24)
        .map(|i| {
            let key = if i == 16 { 3 } else { i + 3 };
            plain(format!("k{key}"), StepStatus::Succeeded)
        })
        .collect();
    store.record("r1", &again).unwrap();
    store.unpack("r1").unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM steps"), 26);
    assert_eq!(count(&store, "SELECT count(*) FROM attempts"), 1);
    assert_eq!(
        count(
            &store,
            r#"SELECT position FROM steps WHERE keys = '["k25"]'"#
        ),
        25,
        "each row holds its own step"
    );
    store.finish_run("r1", RunStatus::Succeeded).unwrap();
    assert_eq!(store.runs().unwrap()[0].succeeded, 26);
}

/// A plain success of op `a` at position `i` (key `k{i}`), as a map step
/// that streamed no items records it.
pub(crate) fn plain_success(i: usize) -> StepRecord {
    let mut r = record("a", &format!("k{i}"), StepStatus::Succeeded);
    r.items = vec![];
    r.items_streamed = true;
    r.emitted_items = 0;
    r.emitted_bytes = 0;
    r.position = Some(i as u32);
    r.input_hash = Some(Digest([i as u8; 32]));
    r.memo_key = Some(Digest([9; 32]));
    r.inputs = Some(summary(r#"[{"name":"v"}]"#, r#"[{"hex":"01"}]"#));
    r.output = Some(Arc::from(format!("v{i}").as_bytes()));
    r.wall_secs = 0.5 + i as f64;
    r
}

fn writes(steps: impl IntoIterator<Item = StepRecord>) -> Vec<Write> {
    steps
        .into_iter()
        .map(|s| Write::Step(Box::new(s)))
        .collect()
}

/// A new run's plain successes go [`pack::PACK_STEPS`] to a `step_packs`
/// row, no `steps` row while it runs (counted all the same); they read
/// back packed as the rows of the same steps read; written out, each is
/// exactly the row a resumed run writes for it, and the packs are dropped.
#[test]
fn plain_successes_of_a_new_run_are_packed_until_read_and_unpack_to_the_same_rows() {
    let n = pack::PACK_STEPS + 3;
    let (dir, mut store) = new_run();
    store
        .record("r1", &writes((0..n).map(plain_success)))
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 2);
    assert_eq!(store.run("r1").unwrap().succeeded, n as u64);
    // The same steps recorded into a run this handle did not create: rows.
    begin(&mut store, "r2");
    let mut other = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    begin(&mut other, "r2");
    other
        .record("r2", &writes((0..n).map(plain_success)))
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), n as i64);

    // Read packed, as they are: the same as the rows of the same steps.
    let read = store.steps("r1").unwrap();
    assert_eq!(read.len(), n, "every step read back");
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 2);
    let json = |steps: &[crate::store::StepRow]| serde_json::to_value(steps).unwrap();
    assert_eq!(json(&read), json(&store.steps("r2").unwrap()));
    store.unpack("r1").unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(json(&store.steps("r1").unwrap()), json(&read));
    let columns = "op, keys, status, attempts, wall_secs, failure_kind, failure_message,
        peak_memory_bytes, emitted_items, emitted_bytes, fuel_used, input_hash, inputs, output_hash,
        output, memo_key, stdout, stderr, log, tolerated, metadata, no_value, position, services,
        memoized, (SELECT heads FROM op_inputs h WHERE h.id = input_heads)";
    let rows = |run: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let sql = format!("SELECT {columns} FROM steps WHERE run_id = ?1 ORDER BY keys");
        let mut stmt = store.conn.prepare(&sql).unwrap();
        stmt.query_map([run], |r| (0..26).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let (r1, r2) = (rows("r1"), rows("r2"));
    assert_eq!(r1.len(), n);
    for (a, b) in r1.iter().zip(&r2) {
        assert!(a == b, "unpacked {a:?}\nas a row {b:?}");
    }
    let k5 = read.iter().find(|s| s.keys == ["k5"]).unwrap();
    assert_eq!((k5.wall_secs, k5.output_bytes), (5.5, Some(2)));
    assert_eq!(
        store
            .step_output("r1", "a", &["k7".into()])
            .unwrap()
            .as_deref(),
        Some(&b"v7"[..])
    );
    assert_eq!(
        store.run("r1").unwrap().succeeded,
        n as u64,
        "the counts stay"
    );
}

/// A resume reads packed successes as they are (their values and hashes,
/// the packs left in place); recording into the run again first writes
/// them as rows, so a rerun step replaces its row as any other.
#[test]
fn a_resume_reads_packed_successes_and_a_rerun_replaces_its_packed_row() {
    let (dir, mut store) = new_run();
    store
        .record("r1", &writes((0..10).map(plain_success)))
        .unwrap();
    let mut prior = store.successes("r1").unwrap();
    prior.sort_by_key(|p| p.keys.clone());
    assert_eq!(prior.len(), 10);
    let k3 = prior.iter().find(|p| p.keys == ["k3"]).unwrap();
    assert_eq!(&*k3.output, b"v3");
    assert_eq!(k3.input_hash, Some(Digest([3; 32])));
    assert_eq!(k3.memo_key, Some(Digest([9; 32])));
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM step_packs"),
        1,
        "read, not unpacked"
    );

    let mut resumed = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    begin(&mut resumed, "r1");
    let mut rerun = plain_success(3);
    rerun.output = Some(Arc::from(&b"new"[..]));
    resumed.record("r1", &writes([rerun])).unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), 10);
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM attempts"),
        1,
        "the packed outcome kept"
    );
    assert_eq!(
        store
            .step_output("r1", "a", &["k3".into()])
            .unwrap()
            .as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(store.run("r1").unwrap().succeeded, 10);
}

/// Only steps nothing else touches are packed: failed, `cache = true`,
/// later attempts and steps with captured output or items get rows.
#[test]
fn only_plain_first_successes_of_uncached_ops_are_packed() {
    let (_dir, mut store) = new_run();
    let mut failed = plain_success(0);
    failed.status = StepStatus::Failed;
    failed.failure_kind = Some("trap".into());
    let mut cached = plain_success(1);
    cached.memoized = true;
    let mut retried = plain_success(2);
    retried.attempts = 2;
    let mut printed = plain_success(3);
    printed.stdout = "hi".into();
    let mut emitted = plain_success(4);
    emitted.items_streamed = false;
    emitted.items = vec![item("x", b"v")];
    let steps = [failed, cached, retried, printed, emitted, plain_success(5)];
    store.record("r1", &writes(steps)).unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), 5);
    assert_eq!(
        raw::<i64>(
            &store,
            r#"SELECT count(*) FROM steps WHERE keys = '["k5"]'"#
        ),
        0
    );
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 1);
}

/// A damaged pack is an error naming the store, the run and the pack, for
/// readers and for a resume; nothing panics.
#[test]
fn a_pack_that_does_not_decode_is_reported_with_the_store_and_run() {
    let (_dir, store) = {
        let (dir, mut store) = new_run();
        store
            .record("r1", &writes((0..3).map(plain_success)))
            .unwrap();
        (dir, store)
    };
    store
        .conn
        .execute("UPDATE step_packs SET steps = x'ff'", [])
        .unwrap();
    for err in [
        store.steps("r1").unwrap_err(),
        store.successes("r1").unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("runs.db")
                && text.contains("run `r1`")
                && text.contains("does not decode"),
            "{text}"
        );
    }
}

/// More packs than one unpacking commit takes: every step is written out,
/// in several short transactions (a recorder of a running run waits for
/// the write lock only that long).
#[test]
fn writing_out_many_packs_takes_several_commits() {
    let (_dir, mut store) = new_run();
    let n = pack::PACK_STEPS * 65 + 1;
    store
        .record("r1", &writes((0..n).map(plain_success)))
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 66);
    let events_before = raw::<i64>(&store, "SELECT count(*) FROM events");
    store.unpack("r1").unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), n as i64);
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM events"),
        events_before,
        "unpacking is not a new event: the viewer's cursor does not move"
    );
}

/// A resumed run unpacks a few packs per commit, and first the pack of
/// any step it runs again: the new row replaces the packed outcome (which
/// goes to `attempts` and out of the counts) in the same commit, so the
/// counts are exact while other packs are still there.
#[test]
fn a_rerun_writes_out_its_own_pack_first_and_the_counts_stay_exact() {
    let (dir, mut store) = new_run();
    let n = pack::PACK_STEPS * (PACKS_PER_COMMIT + 2);
    store
        .record("r1", &writes((0..n).map(plain_success)))
        .unwrap();
    let mut resumed = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    begin(&mut resumed, "r1");
    // The last step is in the last pack, which the first commit's
    // PACKS_PER_COMMIT would leave.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut rerun = plain_success(n - 1);
    rerun.output = Some(Arc::from(&b"new"[..]));
    resumed.record("r1", &writes([rerun])).unwrap();
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM step_packs"),
        1,
        "the first commit's packs and the rerun step's own"
    );
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM attempts"), 1);
    let counted: u64 = store.step_counts("r1").unwrap().iter().map(|c| c.n).sum();
    assert_eq!(counted, n as u64, "each step counted once, packs left");
    assert_eq!(store.run("r1").unwrap().succeeded, n as u64);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 1);
    // Rerun again, from the pack left (one before the last).
    let mut again = plain_success(n - pack::PACK_STEPS - 1);
    again.output = Some(Arc::from(&b"again"[..]));
    drop(resumed);
    let mut resumed = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    begin(&mut resumed, "r1");
    resumed.record("r1", &writes([again])).unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM attempts"), 2);
    // A resume stopped here and resumed again reads the step once: its row.
    let key = [format!("k{}", n - 1)];
    let prior = store.successes("r1").unwrap();
    assert_eq!(prior.len(), n, "each step once");
    let last = prior.iter().find(|p| p.keys == key).unwrap();
    assert_eq!(&*last.output, b"new");
    assert_eq!(
        store.step_output("r1", "a", &key).unwrap().as_deref(),
        Some(&b"new"[..]),
        "the rerun's row, not the older packed outcome"
    );
    let counted: u64 = store.step_counts("r1").unwrap().iter().map(|c| c.n).sum();
    assert_eq!(counted, n as u64, "each step counted once");
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM steps"), n as i64);
    assert_eq!(store.run("r1").unwrap().succeeded, n as u64);
}

/// A run resumed by a build before schema 15 (which could count a rerun
/// step twice while its pack was left) has its packs written out by the
/// first read of its counts, once, and its counts are then exact.
#[test]
fn counts_of_a_run_an_older_build_resumed_settle_on_first_read() {
    let (_dir, mut store) = new_run();
    let n = pack::PACK_STEPS * 3;
    store
        .record("r1", &writes((0..n).map(plain_success)))
        .unwrap();
    // What an older build left: the rerun's row beside its packed
    // outcome, both counted.
    let mut rerun = plain_success(n - 1);
    rerun.attempts = 2;
    store.record("r1", &writes([rerun])).unwrap();
    store
        .conn
        .execute_batch("UPDATE runs SET counts_unsettled = 1")
        .unwrap();
    assert_eq!(store.run("r1").unwrap().succeeded, n as u64 + 1);
    let counted: u64 = store.step_counts("r1").unwrap().iter().map(|c| c.n).sum();
    assert_eq!(counted, n as u64, "settled: each step once");
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT counts_unsettled FROM runs"), 0);
    assert_eq!(store.run("r1").unwrap().succeeded, n as u64);
}

/// A recording handle's commits ask its checkpointer thread to copy the WAL
/// into the database (instead of copying it themselves): the WAL stays
/// small however much is written, and everything reads back.
#[test]
fn the_checkpointer_thread_keeps_the_wal_small_while_a_run_records() {
    let (dir, mut store) = new_run();
    store.checkpoint_pages = 16;
    let (batches, per_batch) = (200, 100);
    record_item_batches(&mut store, batches, per_batch);
    let checkpointer = store
        .checkpointer
        .as_ref()
        .expect("started on first record");
    // (Its passes may trail the commits that asked for them a moment.)
    for _ in 0..200 {
        if checkpointer.passes() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(checkpointer.passes() > 0, "the thread checkpointed");
    let wal = std::fs::metadata(dir.path().join("runs.db-wal"))
        .unwrap()
        .len();
    let db = std::fs::metadata(dir.path().join("runs.db")).unwrap().len();
    assert!(
        wal < db / 4,
        "the WAL ({wal} bytes) was copied into the database ({db} bytes) as it grew"
    );
    let total: i64 = one(&store, "SELECT count(*) FROM items");
    assert_eq!(total, (batches * per_batch) as i64);
    let last: Vec<u8> = one(&store, "SELECT value FROM items ORDER BY seq DESC LIMIT 1");
    assert_eq!(last, item_value(batches * per_batch - 1));
    // A handle that only reads starts none.
    let reader = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
    assert_eq!(reader.runs().unwrap().len(), 1);
    assert!(
        reader.checkpointer.is_none(),
        "a reading handle has no thread"
    );
}

/// A checkpointer that does not keep up (here: stopped) leaves the WAL to
/// the backstop: a commit past four times the limit checkpoints itself, so
/// the WAL stays bounded and nothing is lost.
#[test]
fn without_the_thread_a_commit_past_the_backstop_checkpoints_itself() {
    let (dir, mut store) = new_run();
    store.checkpoint_pages = 16;
    // The first commit starts the thread; then it is stopped.
    store.record("r1", &writes([plain_success(0)])).unwrap();
    store.checkpointer.as_mut().expect("started").stop();
    // (The first commit may have asked for a pass before the stop.)
    let passes = store.checkpointer.as_ref().unwrap().passes();
    let batches = 200;
    record_item_batches(&mut store, batches, 100);
    assert_eq!(store.checkpointer.as_ref().unwrap().passes(), passes);
    let wal = std::fs::metadata(dir.path().join("runs.db-wal"))
        .unwrap()
        .len();
    let db = std::fs::metadata(dir.path().join("runs.db")).unwrap().len();
    assert!(
        wal < 512 * 1024 && db > 4 * wal,
        "the WAL ({wal} bytes) stayed near the backstop (16 x 4 pages) and was copied \
         into the database ({db} bytes)"
    );
    let total: i64 = one(&store, "SELECT count(*) FROM items");
    assert_eq!(total, (batches * 100) as i64);
}

/// Packs are encoded with a buffer of our own (see `pack::encode`): the
/// bytes are postcard's, so packs written before it still decode.
#[test]
fn packs_encode_to_postcards_own_bytes() {
    let keys: Vec<String> = (0..5).map(|i| format!(r#"["k{i}"]"#)).collect();
    let output = [7u8; 20];
    let steps: Vec<pack::Plain<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, keys)| pack::Plain {
            keys,
            attempts: 1,
            wall_secs: 0.25 * i as f64,
            peak_memory_bytes: 1 << (10 + i),
            emitted_items: i as u64,
            emitted_bytes: 300 * i as u64,
            input_hash: Some([i as u8; 32]),
            memo_key: (i % 2 == 0).then_some([9; 32]),
            inputs: Some(r#"[{"hex":"01"}]"#),
            output: Some(pack::Bytes(&output[..i * 4])),
            position: Some(i as u32 * 1000),
            input_heads: Some(3),
            memoized: false,
        })
        .collect();
    let ours = pack::encode(&steps);
    assert_eq!(ours, postcard::to_allocvec(&steps).unwrap());
    assert_eq!(pack::decode(&ours).unwrap(), steps);
}

/// Item `i`'s value in [`record_item_batches`]: 60 bytes, inline.
fn item_value(i: usize) -> Vec<u8> {
    format!("{i:0>60}").into_bytes()
}

/// Records `batches` commits of `per_batch` items each for run `r1`'s `emit`.
fn record_item_batches(store: &mut SqliteStore, batches: usize, per_batch: usize) {
    for b in 0..batches {
        let items = (b * per_batch..(b + 1) * per_batch)
            .map(|i| StoredItem {
                output: "result".into(),
                key: format!("k{i}"),
                value: Arc::from(item_value(i)),
                metadata: None,
            })
            .collect();
        let batch = crate::store::ItemsRecord {
            op: "emit".into(),
            keys: KeyPath::new(),
            first_seq: (b * per_batch) as u64,
            items,
        };
        store.record("r1", &[Write::Items(batch)]).unwrap();
    }
}

/// A streamed batch of `emit`'s items (`[]` keys) from `first_seq` on.
fn emitted(first_seq: u64, items: Vec<StoredItem>) -> Write {
    Write::Items(crate::store::ItemsRecord {
        op: "emit".into(),
        keys: KeyPath::new(),
        first_seq,
        items,
    })
}

/// `emit` (no keys) succeeded, its items streamed.
fn emit_done() -> Write {
    let mut r = record("emit", "", StepStatus::Succeeded);
    r.keys = KeyPath::new();
    r.items = vec![];
    r.items_streamed = true;
    r.emitted_items = 5;
    Write::Step(Box::new(r))
}

/// (output, key, value, metadata) of each item, to compare reads.
fn item_fields(items: &[StoredItem]) -> Vec<(String, String, Vec<u8>, Option<String>)> {
    items
        .iter()
        .map(|i| {
            let metadata = i.metadata.as_deref().map(str::to_owned);
            (
                i.output.to_string(),
                i.key.clone(),
                i.value.to_vec(),
                metadata,
            )
        })
        .collect()
}

/// A new run's streamed items go to `item_packs`, a row per step and commit,
/// none to `items`; a resume reads them packed, the first read of the run
/// writes them as the rows a resumed run writes (same positions, values,
/// blobs and metadata) and drops the packs.
#[test]
fn items_of_a_new_run_are_packed_until_read_and_unpack_to_the_same_rows() {
    let big = vec![5u8; INLINE_MAX + 10];
    let mut with_metadata = item("b", b"vb");
    with_metadata.metadata = Some(Arc::from(r#"[{"label":"x"}]"#));
    let mut other = item("o", b"vo");
    other.output = "other".into();
    let first = vec![item("a", b"va"), with_metadata, item("big", &big)];
    let second = vec![other, item("c", b"vc")];
    let (dir, mut store) = new_run();
    store.record("r1", &[emitted(0, first.clone())]).unwrap();
    store
        .record("r1", &[emitted(3, second.clone()), emit_done()])
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM items"), 0);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM item_packs"), 2);
    // As a resume reads them: packed, by output, in emission order.
    let expected = item_fields(&[
        second[0].clone(),
        first[0].clone(),
        first[1].clone(),
        first[2].clone(),
        second[1].clone(),
    ]);
    let emit = |store: &SqliteStore| {
        let prior = store.successes("r1").unwrap();
        let emit = prior.into_iter().find(|p| p.op == "emit").unwrap();
        item_fields(&emit.items)
    };
    assert_eq!(emit(&store), expected);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM items"), 0);
    // The same writes into a run this handle did not create: rows.
    let path = dir.path().join("runs.db");
    let mut rows = SqliteStore::open(&path).unwrap();
    begin(&mut rows, "r2");
    drop(rows);
    let mut rows = SqliteStore::open(&path).unwrap();
    begin(&mut rows, "r2");
    rows.record("r2", &[emitted(0, first), emitted(3, second), emit_done()])
        .unwrap();
    let row_count = "SELECT count(*) FROM items WHERE run_id = 'r2'";
    assert_eq!(raw::<i64>(&rows, row_count), 5);
    // Reading r1 (here: its metadata) writes its rows, equal to r2's.
    let metadata = store.item_metadata("r1", "emit", &[]).unwrap();
    assert_eq!(
        metadata,
        [(
            "result".to_owned(),
            "b".to_owned(),
            r#"[{"label":"x"}]"#.to_owned()
        )]
    );
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM item_packs"), 0);
    let columns = "output, seq, key, value_hash, value, metadata";
    let table = |run: &str| -> Vec<String> {
        store
            .conn
            .prepare(&format!(
                "SELECT quote({}) FROM items WHERE run_id = ?1 ORDER BY output, seq",
                columns.replace(", ", ") || quote(")
            ))
            .unwrap()
            .query_map([run], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert_eq!(table("r1").len(), 5);
    assert_eq!(table("r1"), table("r2"));
    assert_eq!(emit(&store), expected);
    assert_eq!(
        blob_count(&store),
        1,
        "the large value went to `blobs` once"
    );
}

/// A new attempt of a step (its items from position 0 again) drops the
/// earlier attempt's items, packed or still waiting in the same commit.
#[test]
fn a_new_attempt_drops_the_packed_and_waiting_items_of_the_last() {
    let (_dir, mut store) = new_run();
    store
        .record("r1", &[emitted(0, vec![item("a", b"1"), item("b", b"2")])])
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM item_packs"), 1);
    store
        .record(
            "r1",
            &[
                emitted(0, vec![item("c", b"3")]),
                emitted(1, vec![item("d", b"4")]),
                emitted(0, vec![item("e", b"5")]),
                emit_done(),
            ],
        )
        .unwrap();
    let prior = store.successes("r1").unwrap();
    let emit = prior.iter().find(|p| p.op == "emit").unwrap();
    let keys: Vec<&str> = emit.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["e"], "only the last attempt's items");
    assert_eq!(one::<i64>(&store, "SELECT count(*) FROM items"), 1);
}

/// `cache = true` reuses a step of another run with its items, which that
/// run may still hold packed.
#[test]
fn a_memoized_step_is_found_with_its_packed_items() {
    let (_dir, mut store) = new_run();
    let key = Digest([4; 32]);
    let Write::Step(mut done) = emit_done() else {
        unreachable!()
    };
    done.memoized = true;
    done.memo_key = Some(key);
    let batch = vec![item("a", b"1"), item("b", &[6u8; INLINE_MAX + 1])];
    store
        .record("r1", &[emitted(0, batch.clone()), Write::Step(done)])
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM items"), 0);
    let found = store.memoized(&key).unwrap().expect("found");
    assert_eq!(item_fields(&found.items), item_fields(&batch));
}

/// A resumed run turns a few packs into rows per commit, so a step's items
/// may be part rows and part packs when the run is read: they read back
/// whole and in order.
#[test]
fn items_part_unpacked_by_a_resume_read_back_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let mut store = SqliteStore::open(&path).unwrap();
    begin(&mut store, "r1");
    let packs = pack::ITEM_PACKS_PER_COMMIT + 3;
    let n = packs * 10;
    // One commit per pack, ten items each, the output alternating.
    for p in 0..packs {
        let batch = (p * 10..(p + 1) * 10)
            .map(|i| {
                let mut it = item(&format!("k{i}"), &item_value(i));
                if i % 2 == 1 {
                    it.output = "odd".into();
                }
                it
            })
            .collect();
        store
            .record("r1", &[emitted((p * 10) as u64, batch)])
            .unwrap();
    }
    store.record("r1", &[emit_done()]).unwrap();
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    begin(&mut store, "r1");
    store.record("r1", &writes([plain_success(0)])).unwrap();
    let rows: i64 = raw(&store, "SELECT count(*) FROM items");
    let left: i64 = raw(&store, "SELECT count(*) FROM item_packs");
    assert_eq!((rows, left), ((pack::ITEM_PACKS_PER_COMMIT * 10) as i64, 3));
    let prior = store.successes("r1").unwrap();
    let emit = prior.iter().find(|p| p.op == "emit").unwrap();
    let keys: Vec<String> = emit.items.iter().map(|i| i.key.clone()).collect();
    let odd = (0..n).filter(|i| i % 2 == 1);
    let expected: Vec<String> = odd
        .chain((0..n).filter(|i| i % 2 == 0))
        .map(|i| format!("k{i}"))
        .collect();
    assert_eq!(keys, expected, "by output, then in emission order");
}

/// A damaged item pack, or a packed item whose value is gone from `blobs`,
/// is an error naming the store and the run for a resume and a reader;
/// nothing panics and no item is dropped silently.
#[test]
fn a_damaged_item_pack_or_a_lost_blob_is_reported_not_dropped() {
    let big = vec![3u8; INLINE_MAX + 1];
    let (_dir, mut store) = new_run();
    store
        .record("r1", &[emitted(0, vec![item("a", &big)]), emit_done()])
        .unwrap();
    store.conn.execute("DELETE FROM blobs", []).unwrap();
    let err = store.successes("r1").unwrap_err().to_string();
    assert!(err.contains("runs.db"), "{err}");
    store
        .conn
        .execute("UPDATE item_packs SET items = x'ff'", [])
        .unwrap();
    for err in [
        store.successes("r1").unwrap_err(),
        store.item_metadata("r1", "emit", &[]).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("runs.db") && text.contains("item pack") && text.contains("run `r1`"),
            "{text}"
        );
    }
}

/// A commit's items of one step go [`pack::PACK_ITEMS`] to a pack at most,
/// and read back whole and in order.
#[test]
fn a_large_batch_of_items_fills_several_packs_in_order() {
    let n = 2 * pack::PACK_ITEMS + 5;
    let (_dir, mut store) = new_run();
    let batch = (0..n)
        .map(|i| item(&format!("k{i}"), &item_value(i)))
        .collect();
    store
        .record("r1", &[emitted(0, batch), emit_done()])
        .unwrap();
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM item_packs"), 3);
    let prior = store.successes("r1").unwrap();
    let emit = prior.iter().find(|p| p.op == "emit").unwrap();
    let keys: Vec<String> = emit.items.iter().map(|i| i.key.clone()).collect();
    let expected: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(
        one::<i64>(&store, "SELECT max(seq) FROM items"),
        n as i64 - 1
    );
}

/// A reader of one step (`show RUN 'op[key]'`, `logs`, the viewer's step
/// page) writes out that step's pack and its own items' packs, nothing
/// else of the run; what `show RUN` lists (the counts, the failures) reads
/// no pack at all. Either way it reads what a full read reads.
#[test]
fn one_step_and_the_failures_of_a_packed_run_read_without_writing_out_the_rest() {
    let n = pack::PACK_STEPS * 3;
    let (_dir, mut store) = new_run();
    let mut with_metadata = item("m", b"vm");
    with_metadata.metadata = Some(Arc::from(r#"[{"label":"x"}]"#));
    let other = crate::store::ItemsRecord {
        op: "other".into(),
        keys: KeyPath::new(),
        first_seq: 0,
        items: vec![with_metadata.clone()],
    };
    store
        .record(
            "r1",
            &[
                emitted(0, vec![item("a", b"va"), with_metadata.clone()]),
                emit_done(),
            ],
        )
        .unwrap();
    store.record("r1", &[Write::Items(other)]).unwrap();
    let mut failed = record("a", "bad", StepStatus::Failed);
    failed.failure_kind = Some("trap".into());
    failed.failure_message = Some("boom".into());
    failed.output = None;
    failed.items = vec![];
    let steps = (0..n).map(plain_success).chain([failed]);
    store.record("r1", &writes(steps)).unwrap();
    let step_packs = |store: &SqliteStore| raw::<i64>(store, "SELECT count(*) FROM step_packs");
    let item_packs = |store: &SqliteStore| raw::<i64>(store, "SELECT count(*) FROM item_packs");
    // `a`'s steps in three packs, the emitter's step in a fourth.
    assert_eq!((step_packs(&store), item_packs(&store)), (4, 2));

    let mut counts: Vec<(String, String, u64)> = store
        .step_counts("r1")
        .unwrap()
        .into_iter()
        .map(|c| (c.op, c.status, c.n))
        .collect();
    counts.sort();
    let expected = [
        ("a", "failed", 1),
        ("a", "succeeded", n as u64),
        ("emit", "succeeded", 1),
    ];
    assert_eq!(
        counts,
        expected.map(|(op, status, n)| (op.to_owned(), status.to_owned(), n))
    );
    let failures = store.unsuccessful_steps("r1").unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (&failures[0].keys[..], failures[0].status.as_str()),
        (&["bad".to_owned()][..], "failed")
    );
    assert_eq!(failures[0].failure_message.as_deref(), Some("boom"));
    assert_eq!(
        (step_packs(&store), item_packs(&store)),
        (4, 2),
        "no pack written out"
    );

    // One step of the middle pack: that pack alone becomes rows.
    let k = pack::PACK_STEPS + 5;
    let keys = [format!("k{k}")];
    let row = store
        .step("r1", "a", &keys)
        .unwrap()
        .expect("the packed step");
    assert_eq!((row.wall_secs, row.output_bytes), (0.5 + k as f64, Some(4)));
    assert_eq!(
        store.step_output("r1", "a", &keys).unwrap().as_deref(),
        Some(format!("v{k}").as_bytes())
    );
    assert_eq!(step_packs(&store), 3, "only the step's own pack");
    let rows = "SELECT count(*) FROM steps WHERE op = 'a' AND status = 'succeeded'";
    assert_eq!(raw::<i64>(&store, rows), pack::PACK_STEPS as i64);
    assert!(store.step("r1", "a", &["nope".into()]).unwrap().is_none());
    assert_eq!(
        step_packs(&store),
        3,
        "a step that is not there writes nothing"
    );
    // One emitter's items: its packs alone.
    assert_eq!(
        store.item_metadata("r1", "emit", &[]).unwrap(),
        [(
            "result".to_owned(),
            "m".to_owned(),
            r#"[{"label":"x"}]"#.to_owned()
        )]
    );
    assert_eq!(item_packs(&store), 1, "`other`'s pack stays");
    assert_eq!(step_packs(&store), 2, "the emitter's step came with them");

    // Every step's keys, packed or not, still writing nothing out.
    let all = store.step_keys("r1").unwrap();
    assert_eq!(all.len(), n + 2);
    assert_eq!(all[0], ("a".to_owned(), vec!["bad".to_owned()]));
    assert!(all.contains(&("a".to_owned(), vec![format!("k{}", n - 1)])));
    assert!(all.contains(&("emit".to_owned(), vec![])));
    assert_eq!(step_packs(&store), 2);
    // What a full read then reads of the same step is what was read;
    // it writes nothing out either.
    let full = store.steps("r1").unwrap();
    assert_eq!(full.len(), n + 2);
    assert_eq!((step_packs(&store), item_packs(&store)), (2, 1));
    let again = full.iter().find(|r| r.keys == keys).unwrap();
    assert_eq!(
        serde_json::to_value(&row).unwrap(),
        serde_json::to_value(again).unwrap()
    );
}

/// `show RUN OP`'s order: level by level, as the emitters emitted the keys
/// (not by key bytes), keys no emitter recorded last, by key.
#[test]
fn op_values_follow_the_emission_order_at_every_level() {
    let (_dir, mut store) = new_run();
    let items = |op: &str, outer: &str, keys: &[&str]| {
        Write::Items(crate::store::ItemsRecord {
            op: op.into(),
            keys: (!outer.is_empty())
                .then(|| crate::key::MappingKey::parse(outer).unwrap())
                .into_iter()
                .collect(),
            first_seq: 0,
            items: keys.iter().map(|k| item(k, b"v")).collect(),
        })
    };
    let leaf = |outer: &str, inner: &str| {
        let mut r = record("leaf", outer, StepStatus::Succeeded);
        r.keys.push(crate::key::MappingKey::parse(inner).unwrap());
        r.items = vec![];
        r.output = Some(Arc::from(format!("{outer}/{inner}").as_bytes()));
        Write::Step(Box::new(r))
    };
    let mut writes = vec![
        items("outer", "", &["b", "a"]),
        items("inner", "b", &["y", "x"]),
        items("inner", "a", &["y", "x"]),
    ];
    for (outer, inner) in [("c", "z"), ("a", "x"), ("b", "x"), ("a", "y"), ("b", "y")] {
        writes.push(leaf(outer, inner));
    }
    store.record("r1", &writes).unwrap();
    let values: Vec<String> = store
        .op_values("r1", "leaf")
        .unwrap()
        .into_iter()
        .map(|s| String::from_utf8(s.output.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["b/y", "b/x", "a/y", "a/x", "c/z"]);
}

/// `show RUN OP` reads a new run's packed steps and items as they are
/// (nothing written out), in emission order, beside its rows; the same
/// after the run is written out. A step both packed and a row (what an
/// older build's resume could leave) is read once, its later outcome.
#[test]
fn op_values_read_packed_steps_and_items_without_writing_them_out() {
    let (_dir, mut store) = new_run();
    let n = pack::PACK_STEPS * 2 + 5;
    // Emitted k{n-1} first, down to k0: emission order is not key order.
    let emitted: Vec<String> = (0..n).rev().map(|i| format!("k{i}")).collect();
    let emitted: Vec<&str> = emitted.iter().map(String::as_str).collect();
    let mut writes_ = vec![Write::Items(super::super::ItemsRecord {
        op: "emit".into(),
        keys: KeyPath::new(),
        first_seq: 0,
        items: emitted.iter().map(|k| item(k, b"v")).collect(),
    })];
    let mut failed = plain_success(n);
    failed.status = StepStatus::Failed;
    failed.failure_kind = Some("trap".into());
    failed.output = None;
    writes_.extend(writes((0..n).map(plain_success).chain([failed])));
    store.record("r1", &writes_).unwrap();
    let packs = raw::<i64>(&store, "SELECT count(*) FROM step_packs");
    let item_packs = raw::<i64>(&store, "SELECT count(*) FROM item_packs");
    assert!(packs >= 2 && item_packs >= 1, "{packs} {item_packs}");

    let read = |store: &SqliteStore| -> Vec<(String, String, Option<Vec<u8>>)> {
        store
            .op_values("r1", "a")
            .unwrap()
            .into_iter()
            .map(|s| (s.keys.join("/"), s.status, s.output.map(|o| o.to_vec())))
            .collect()
    };
    let packed = read(&store);
    assert_eq!(packed.len(), n + 1);
    let order: Vec<&str> = packed.iter().map(|(k, _, _)| k.as_str()).collect();
    let unemitted = format!("k{n}");
    let mut expected = emitted.clone();
    expected.push(&unemitted);
    assert_eq!(order, expected, "emission order; the unemitted key last");
    assert_eq!(
        packed[0],
        (
            format!("k{}", n - 1),
            "succeeded".into(),
            Some(format!("v{}", n - 1).into_bytes())
        )
    );
    assert_eq!(packed[n].1, "failed");
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), packs);
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM item_packs"),
        item_packs
    );

    // Recorded twice, as an older build's resume left it: a row beside
    // the packed outcome. The row (newer) is read, once.
    let mut rerun = plain_success(3);
    rerun.attempts = 2;
    rerun.output = Some(Arc::from(&b"new"[..]));
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.record("r1", &writes([rerun])).unwrap();
    let twice = read(&store);
    assert_eq!(twice.len(), n + 1, "each step once");
    let k3 = twice.iter().find(|(k, _, _)| k == "k3").unwrap();
    assert_eq!(k3.2.as_deref(), Some(&b"new"[..]));
    assert_eq!(
        raw::<i64>(&store, "SELECT count(*) FROM step_packs"),
        0,
        "written out"
    );
    let mut once = packed;
    once.iter_mut().find(|(k, _, _)| k == "k3").unwrap().2 = Some(b"new".to_vec());
    assert_eq!(twice, once, "the same values, packed or written out");
}

/// Every step read whole (`show --status succeeded`) from rows and packs;
/// a step both packed and a row (an older build's resume) is read once,
/// its later outcome, the run written out for it.
#[test]
fn steps_read_packed_and_a_step_recorded_twice_once() {
    let (_dir, mut store) = new_run();
    let n = pack::PACK_STEPS + 1;
    store
        .record("r1", &writes((0..n).map(plain_success)))
        .unwrap();
    assert_eq!(store.steps("r1").unwrap().len(), n);
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 2);
    let mut rerun = plain_success(3);
    rerun.attempts = 2;
    rerun.output = Some(Arc::from(&b"newer"[..]));
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.record("r1", &writes([rerun])).unwrap();
    let steps = store.steps("r1").unwrap();
    assert_eq!(steps.len(), n, "each step once");
    let k3 = steps.iter().find(|s| s.keys == ["k3"]).unwrap();
    assert_eq!((k3.attempts, k3.output_bytes), (2, Some(5)));
    assert_eq!(raw::<i64>(&store, "SELECT count(*) FROM step_packs"), 0);
    let keys: Vec<&str> = steps.iter().map(|s| s.keys[0].as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "by op, then keys");
}
