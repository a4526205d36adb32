//! `probe`: a test op whose behaviour comes from its `config`, so each e2e test
//! states what it needs next to its job. It returns a JSON description of what
//! it saw; see `tests/guests/README.md`.

wit_bindgen::generate!({ path: "../../../wit", world: "dynamic-op" });

use dynhost::op::host::{add_output_metadata, emit_dynamic, emit_dynamic_to, log, set_output};
use dynhost::op::types::{InputValue, Level, MetadataEntry, MetadataValue};
use exports::dynhost::op::op::{Context, Guest, Input};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts calls into this instance: a fresh instance per key always sees 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Probe;

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value always serializes")
}

impl Guest for Probe {
    fn run(ctx: Context, inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        let started = now_ms();
        let counter = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let config: Value = serde_json::from_str(&ctx.config).map_err(|e| e.to_string())?;
        let key = ctx.keys.last().cloned().unwrap_or_default();
        let mut seen = serde_json::Map::new();
        for input in &inputs {
            let value = match &input.value {
                InputValue::Single(b) if config["sizes_only"].as_bool() == Some(true) => {
                    json!(b.len())
                }
                InputValue::Single(b) => parse(b),
                InputValue::Collected(c) => json!({
                    "items": c.items.iter().map(|i| json!([i.keys, parse(&i.value)])).collect::<Vec<_>>(),
                    "failed": c.failed.iter().map(|f| json!([f.keys, f.kind, f.message])).collect::<Vec<_>>(),
                }),
            };
            seen.insert(input.name.clone(), value);
        }
        let mut out = json!({ "op": ctx.op, "keys": ctx.keys, "counter": counter, "inputs": seen });

        if let Some(text) = config["print"].as_str() {
            println!("{text} (stdout)");
            eprintln!("{text} (stderr)");
            log(Level::Info, &format!("{text} (log)"));
        }
        if let Some(ms) = config["sleep_ms_input"]
            .as_str()
            .and_then(|name| seen_number(&out, name))
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let action = config["on_key"]
            .get(&key)
            .or_else(|| config["on_key"].get("*"));
        if action.and_then(Value::as_str) == Some("no_value") {
            return Ok(None);
        }
        if let Some(action) = action.and_then(Value::as_str)
            && let Some(result) = misbehave(action, &key)?
        {
            return Ok(Some(result));
        }
        emit(&config, &out)?;
        if let Some(entries) = config.get("result_metadata") {
            add_output_metadata("result", &metadata(entries)?)?;
        }
        // Named plain outputs: `set_outputs` for every key, plus
        // `set_outputs_on_key.KEY`; values are written as JSON.
        let on_key = config["set_outputs_on_key"].get(&key);
        for outputs in [config.get("set_outputs"), on_key].into_iter().flatten() {
            for (name, value) in outputs.as_object().into_iter().flatten() {
                set_output(name, &bytes(value))?;
            }
        }
        for (name, entries) in config["output_metadata"].as_object().into_iter().flatten() {
            add_output_metadata(name, &metadata(entries)?)?;
        }
        if config["fail_after_emit"].as_bool() == Some(true) {
            return Err("probe was told to fail after emitting".into());
        }
        let read_path = config["read_input"]
            .as_str()
            .and_then(|name| out["inputs"][name].as_str().map(str::to_owned));
        if let Some(path) = config["read_file"]
            .as_str()
            .map(str::to_owned)
            .or(read_path)
        {
            out["read"] = match std::fs::read_to_string(&path) {
                Ok(text) => json!({ "ok": text }),
                Err(e) => json!({ "err": e.to_string() }),
            };
        }
        // `"stat_input": NAME`: the size `std::fs::metadata` (links
        // followed) reports for the path in that input, or its error.
        if let Some(path) = config["stat_input"]
            .as_str()
            .and_then(|name| out["inputs"][name].as_str().map(str::to_owned))
        {
            out["stat"] = match std::fs::metadata(&path) {
                Ok(meta) => json!({ "len": meta.len(), "dir": meta.is_dir() }),
                Err(e) => json!({ "err": e.to_string() }),
            };
        }
        if let Some(dir) = config["fail_once_dir"].as_str() {
            // Fails the first attempt of each key, succeeds on retry: the marker
            // file in a writable mount is the only state that survives.
            let marker = format!("{dir}/{}", ctx.keys.join("_"));
            if std::fs::metadata(&marker).is_err() {
                std::fs::write(&marker, b"1").map_err(|e| format!("cannot write {marker}: {e}"))?;
                return Err(format!("first attempt of {marker} fails"));
            }
        }
        if let Some(path) = config["write_file"].as_str() {
            out["write"] = match std::fs::write(path, ctx.keys.join("/")) {
                Ok(()) => json!({ "ok": path }),
                Err(e) => json!({ "err": e.to_string() }),
            };
        }
        if config["clock_random"].as_bool() == Some(true) {
            use std::hash::BuildHasher;
            // `RandomState` is seeded from WASI randomness.
            let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
            out["clock_random"] = json!({ "now_ms": now_ms(), "random": random.to_string() });
        }
        if config["env"].as_bool() == Some(true) {
            out["env"] = json!(std::env::vars().collect::<Vec<_>>());
        }
        if let Some(addr) = config["connect"].as_str() {
            out["connect"] = match std::net::TcpStream::connect(addr) {
                Ok(_) => json!({ "ok": addr }),
                Err(e) => json!({ "err": e.to_string() }),
            };
        }
        if config["timestamps"].as_bool() == Some(true) {
            out["span_ms"] = json!([started, now_ms()]);
        }
        Ok(Some(bytes(&out)))
    }
}

/// `[{"label", "kind", "value"}]` (kinds as in the WIT's `metadata-value`)
/// as metadata entries.
fn metadata(entries: &Value) -> Result<Vec<MetadataEntry>, String> {
    let mut out = Vec::new();
    for e in entries.as_array().into_iter().flatten() {
        let label = e["label"].as_str().unwrap_or_default().to_owned();
        let v = &e["value"];
        let text = || {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        };
        let value = match e["kind"].as_str().unwrap_or("text") {
            "integer" => {
                MetadataValue::Integer(v.as_i64().ok_or("integer metadata needs a number")?)
            }
            "float" => MetadataValue::Float(v.as_f64().ok_or("float metadata needs a number")?),
            "boolean" => {
                MetadataValue::Boolean(v.as_bool().ok_or("boolean metadata needs a bool")?)
            }
            "json" => MetadataValue::Json(text()),
            "url" => MetadataValue::Url(text()),
            "path" => MetadataValue::Path(text()),
            _ => MetadataValue::Text(text()),
        };
        out.push(MetadataEntry { label, value });
    }
    Ok(out)
}

/// Wall-clock milliseconds, for tests that check which steps overlapped.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn seen_number(out: &Value, input: &str) -> Option<u64> {
    out["inputs"][input].as_u64()
}

/// Emits the items `config` asks for:
/// - `emit`: a list of `{"key", "value", "out"?}`;
/// - `emit_count`: `n` items keyed `k0`..`k{n-1}` with the index as value;
/// - `emit_input`: the name of an input holding a JSON list; one item per element.
fn emit(config: &Value, out: &Value) -> Result<(), String> {
    let pause = config["emit_sleep_ms"]
        .as_u64()
        .map(std::time::Duration::from_millis);
    for item in config["emit"].as_array().into_iter().flatten() {
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
        let key = item["key"]
            .as_str()
            .ok_or("emit item needs a string `key`")?;
        let value = bytes(&item["value"]);
        match (item["out"].as_str(), item.get("metadata")) {
            (output, Some(entries)) => dynhost::op::host::emit(
                output.unwrap_or("result"),
                key,
                &value,
                &metadata(entries)?,
            )?,
            (Some(output), None) => emit_dynamic_to(output, key, &value)?,
            (None, None) => emit_dynamic(key, &value)?,
        }
    }
    if let Some(n) = config["emit_count"].as_u64() {
        for i in 0..n {
            emit_dynamic(&format!("k{i}"), &bytes(&json!(i)))?;
        }
    }
    if let Some(name) = config["emit_input"].as_str() {
        for element in out["inputs"][name].as_array().into_iter().flatten() {
            let key = element
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| element.to_string());
            emit_dynamic(&key, &bytes(element))?;
        }
    }
    Ok(())
}

/// Hostile behaviours, chosen per key by `config.on_key`. `Some` replaces the
/// op's result.
fn misbehave(action: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    // `return_kib:N`: N KiB that differ per key (the store keeps one copy of
    // equal values, so only distinct ones cost it a write each).
    if let Some(kib) = action.strip_prefix("return_kib:") {
        let kib: usize = kib.parse().map_err(|_| format!("bad size in `{action}`"))?;
        let mut value: Vec<u8> = key.bytes().cycle().take(kib << 10).collect();
        value.extend_from_slice(key.as_bytes());
        return Ok(Some(value));
    }
    // `emit_mib:N` / `return_mib:N`: one value of N MiB, to test the limits
    // on large values.
    if let Some((what, mib)) = action.split_once(':') {
        let mib: usize = mib.parse().map_err(|_| format!("bad size in `{action}`"))?;
        let value = vec![b'v'; mib << 20];
        return match what {
            "emit_mib" => emit_dynamic("big", &value).map(|()| None),
            "return_mib" => Ok(Some(value)),
            _ => Err(format!("probe: unknown action `{action}`")),
        };
    }
    match action {
        "fail" => return Err("probe was told to fail".into()),
        "panic" => panic!("probe was told to panic"),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        // Blocked in a WASI call, where no wasm runs to notice the epoch.
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        "sleep_forever" => std::thread::sleep(std::time::Duration::MAX),
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => {
            fn deep(n: u64) -> u64 {
                // `black_box` hides from the compiler that this never ends.
                if std::hint::black_box(n) == u64::MAX {
                    0
                } else {
                    deep(n + 1) + 1
                }
            }
            std::hint::black_box(deep(0));
        }
        "stdout_flood" => {
            // One GiB: far past any capture limit, finite so the step can succeed.
            let line = "x".repeat((1 << 16) - 1);
            for _ in 0..(1 << 14) {
                println!("{line}");
            }
        }
        "emit_flood" => {
            for i in 0..1_000_000u64 {
                emit_dynamic(&format!("f{i}"), b"0")?;
            }
        }
        "huge_emit" => emit_dynamic("huge", &vec![7u8; 64 << 20])?,
        // Over the host's per-call byte budget (the larger value limit plus
        // 1 MiB, and at least 128 MiB): refused before it is copied out.
        "giant_emit" => emit_dynamic("giant", &vec![7u8; 144 << 20])?,
        "huge_result" => return Ok(Some(vec![b'x'; 64 << 20])),
        "bad_key" => emit_dynamic("no spaces allowed", b"0")?,
        "dup_key" => {
            emit_dynamic("same", b"1")?;
            emit_dynamic("same", b"2")?;
        }
        // Reaching for what the sandbox does not grant: each returns what it saw.
        "env" => {
            return Ok(Some(bytes(
                &json!({ "env": std::env::vars().collect::<Vec<_>>() }),
            )));
        }
        "socket" => {
            let result = std::net::TcpStream::connect("127.0.0.1:22")
                .map(|_| ())
                .map_err(|e| e.to_string());
            return Ok(Some(bytes(&json!({ "connect": format!("{result:?}") }))));
        }
        "passwd" => {
            let result = std::fs::read_to_string("/etc/passwd")
                .map(|_| ())
                .map_err(|e| e.to_string());
            return Ok(Some(bytes(&json!({ "read": format!("{result:?}") }))));
        }
        other => return Err(format!("probe: unknown action `{other}`")),
    }
    Ok(None)
}

export!(Probe);
