//! Hostile ops (issue 3): each misbehaves on its own key inside a map next to
//! well-behaved keys. The hostile key fails with the right typed reason, the
//! good keys finish with correct results, and the host stays up with bounded
//! memory.

use crate::support::{CliOutput, TestJob};
use serde_json::json;

/// Every hostile action of the probe and the failure kind it must produce.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("loop", "timeout", "`timeout_secs` limit of 3 s"),
    ("alloc", "memory-limit", "`memory_mib` limit of 128 MiB"),
    ("recurse", "trap", "stack overflow"),
    (
        "emit_flood",
        "output-limit",
        "`max_emits` limit of 20000 items",
    ),
    (
        "huge_emit",
        "output-limit",
        "`max_value_bytes` limit of 16777216",
    ),
    (
        "huge_result",
        "output-limit",
        "`max_output_bytes` limit of 8388608",
    ),
    ("panic", "trap", "unreachable"),
    ("bad_key", "invalid-key", "emitted invalid mapping key"),
    ("dup_key", "invalid-key", "twice on output `result`"),
];

fn hostile_job() -> TestJob {
    let mut keys: Vec<&str> = vec!["good1"];
    keys.extend(HOSTILE.iter().map(|(k, _, _)| *k));
    keys.extend(["stdout_flood", "env", "socket", "passwd", "good2"]);
    let items: Vec<String> = keys
        .iter()
        .map(|k| format!("{{ key = \"{k}\", value = \"{k}\" }}"))
        .collect();
    let actions: Vec<String> = HOSTILE
        .iter()
        .map(|(k, _, _)| *k)
        .chain(["env", "socket", "passwd"])
        .map(|k| format!("{k} = \"{k}\""))
        .collect();
    TestJob::new(&format!(
        r#"name = "hostile"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{}]
[ops.op]
component = "{{probe}}"
dynamic = true
inputs.v = {{ map = "emit" }}
config.on_key = {{ {} }}
limits = {{ timeout_secs = 3, memory_mib = 128, max_output_bytes = 8388608, max_log_bytes = 65536, max_emits = 20000 }}
[ops.flood]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.on_key = {{ stdout_flood = "stdout_flood" }}
limits = {{ max_log_bytes = 65536 }}
[ops.after]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
inputs.prev = "op"
"#,
        items.join(", "),
        actions.join(", ")
    ))
}

#[test]
fn hostile_keys_fail_alone_with_typed_reasons() {
    hostile_keys_fail_alone(&[]);
}

/// The same suite with every step in a worker process (`run --processes`):
/// the sandbox, limits and reasons are the child's, and must be the same.
#[test]
fn hostile_keys_fail_alone_in_worker_processes_too() {
    hostile_keys_fail_alone(&["--processes", "2"]);
}

fn hostile_keys_fail_alone(args: &[&str]) {
    let out = hostile_job().run(args);
    out.assert_code(1);
    for (key, kind, detail) in HOSTILE {
        let step = out.step(&format!("op[{key}]"));
        assert_eq!(step["failure"]["kind"], *kind, "op[{key}]: {step}");
        let message = step["failure"]["message"].as_str().unwrap();
        assert!(
            message.contains(detail),
            "op[{key}] message lacks {detail:?}: {message}"
        );
    }
    for good in ["good1", "good2"] {
        let value = out.output(&format!("after[{good}]"));
        assert_eq!(
            value["inputs"]["prev"]["inputs"]["v"], good,
            "good key `{good}` got a wrong value"
        );
        assert_eq!(value["counter"], 1);
    }
    // Reaching for the host's environment, network or files gets nothing,
    // and the step itself succeeds next to its hostile siblings.
    let saw = |key: &str| out.output(&format!("after[{key}]"))["inputs"]["prev"].clone();
    assert_eq!(saw("env")["env"], json!([]), "the host environment leaked");
    assert!(
        saw("socket")["connect"]
            .as_str()
            .unwrap()
            .starts_with("Err("),
        "{}",
        saw("socket")
    );
    assert!(
        saw("passwd")["read"].as_str().unwrap().starts_with("Err("),
        "{}",
        saw("passwd")
    );
    // A gigabyte of stdout costs the host nothing: the step succeeds and the
    // capture stops at the limit with a marker.
    let flood = out.step("flood[stdout_flood]");
    assert_eq!(flood["status"], "succeeded");
    let stdout = flood["stdout"].as_str().unwrap();
    assert!(
        stdout.len() < 70_000
            && stdout.ends_with("[dynhost: output truncated at the `max_log_bytes` limit]\n")
    );
    assert_host_memory_bounded(&out);
}

/// The host's own peak RSS stays far below what the hostile ops asked for
/// (unbounded allocation, a gigabyte of stdout, 64 MiB values).
fn assert_host_memory_bounded(out: &CliOutput) {
    let rss = out.finished()["host_peak_rss_bytes"]
        .as_u64()
        .expect("peak RSS reported on Linux");
    assert!(rss < 700 << 20, "host peak RSS {} MiB", rss >> 20);
}

#[test]
fn paths_cannot_escape_a_mount() {
    let job = TestJob::new(
        r#"name = "escape"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [
  { key = "dotdot", value = "/data/../../../../etc/passwd" },
  { key = "symlink", value = "/data/link/passwd" },
  { key = "absolute", value = "/etc/passwd" },
  { key = "inside", value = "/data/in.txt" },
]
[ops.read]
component = "{probe}"
inputs.path = { map = "emit" }
mounts = [{ host = "data", guest = "/data" }]
config.read_input = "path"
"#,
    );
    job.write("data/in.txt", "inside");
    std::os::unix::fs::symlink("/etc", job.dir().join("data/link")).unwrap();
    let out = job.run(&[]);
    out.assert_code(0);
    for key in ["dotdot", "symlink", "absolute"] {
        let read = &out.output(&format!("read[{key}]"))["read"];
        assert!(
            read["err"].is_string(),
            "read[{key}] escaped the mount: {read}"
        );
    }
    assert_eq!(out.output("read[inside]")["read"]["ok"], "inside");
}

/// A stat that follows links takes a shortcut for a plain name that is not
/// a link (one `statx` without following); a link still goes the long,
/// sandboxed way: to its target inside the mount, never out of it.
#[test]
fn a_stat_follows_links_only_within_the_mount() {
    let job = TestJob::new(
        r#"name = "stat"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [
  { key = "file", value = "/data/in.txt" },
  { key = "dir", value = "/data/sub" },
  { key = "link_in", value = "/data/link_in" },
  { key = "link_out", value = "/data/link_out" },
  { key = "link_up", value = "/data/link_up" },
  { key = "dotdot", value = "/data/sub/../../outside.txt" },
  { key = "missing", value = "/data/missing" },
]
[ops.stat]
component = "{probe}"
inputs.path = { map = "emit" }
mounts = [{ host = "data", guest = "/data" }]
config.stat_input = "path"
"#,
    );
    // 16 bytes: not the length of the link `in.txt` itself.
    job.write("data/in.txt", "inside the mount");
    job.write("data/sub/deep.txt", "deeper");
    job.write("outside.txt", "outside the mount");
    let data = job.dir().join("data");
    std::os::unix::fs::symlink("in.txt", data.join("link_in")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("link_out")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", data.join("link_up")).unwrap();
    let out = job.run(&[]);
    out.assert_code(0);
    let stat = |key: &str| out.output(&format!("stat[{key}]"))["stat"].clone();
    assert_eq!(stat("file")["len"], 16);
    assert_eq!(stat("dir")["dir"], true);
    assert_eq!(
        stat("link_in")["len"],
        16,
        "a link inside the mount is followed"
    );
    for key in ["link_out", "link_up", "dotdot", "missing"] {
        assert!(
            stat(key)["err"].is_string(),
            "stat[{key}] saw past the mount: {}",
            stat(key)
        );
    }
}

#[test]
fn a_writable_mount_is_the_only_place_to_write() {
    let job = TestJob::new(
        r#"name = "write"
[ops.w]
component = "{probe}"
mounts = [{ host = "out", guest = "/out", writable = true }, { host = "ro", guest = "/ro" }]
config = { write_file = "/out/result.txt" }
[ops.r]
component = "{probe}"
mounts = [{ host = "ro", guest = "/ro" }]
config = { write_file = "/ro/result.txt" }
"#,
    );
    job.write("out/.keep", "").write("ro/.keep", "");
    let out = job.run(&[]);
    out.assert_code(0);
    assert_eq!(out.output("w")["write"]["ok"], "/out/result.txt");
    assert!(job.dir().join("out/result.txt").is_file());
    assert!(out.output("r")["write"]["err"].is_string());
    assert!(!job.dir().join("ro/result.txt").exists());
}

/// A value larger than the host's budget for one call (the larger value
/// limit plus 1 MiB, at least 128 MiB) is refused while it is still in the
/// guest: the step fails with an output limit naming both limits, and the
/// host never makes a copy of it.
#[test]
fn a_value_over_the_host_call_budget_is_refused_before_it_is_copied() {
    let job = TestJob::new(
        r#"name = "giant"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "giant", value = 1 }, { key = "ok", value = 2 }]
[ops.op]
component = "{probe}"
dynamic = true
inputs.v = { map = "emit" }
config.on_key = { giant = "giant_emit" }
limits = { memory_mib = 256, max_output_bytes = 8388608 }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(1);
    let giant = out.step("op[giant]");
    assert_eq!(giant["failure"]["kind"], "output-limit", "{giant}");
    let message = giant["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("over both the `max_value_bytes` limit of 16777216 bytes"),
        "{message}"
    );
    assert_eq!(out.step("op[ok]")["status"], "succeeded");
    let rss = out.finished()["host_peak_rss_bytes"]
        .as_u64()
        .expect("peak RSS reported on Linux");
    // The guest's own 144 MiB are mapped in the host process and count;
    // a copy on the host's side would add another 144.
    assert!(rss < 240 << 20, "host peak RSS {} MiB", rss >> 20);
}

#[test]
fn fuel_limits_instructions_and_is_accounted() {
    let job = TestJob::new(
        r#"name = "fuel"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "spin", value = 1 }, { key = "ok", value = 2 }]
[ops.op]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { spin = "loop" }
limits = { fuel = 50000000 }
"#,
    );
    let out = job.run(&[]);
    out.assert_code(1);
    let spin = out.step("op[spin]");
    assert_eq!(spin["failure"]["kind"], "fuel-exhausted", "{spin}");
    assert!(
        spin["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("`fuel` budget of 50000000")
    );
    let used = out.step("op[ok]")["stats"]["fuel_used"]
        .as_u64()
        .expect("fuel_used");
    assert!(used > 0 && used < 50_000_000, "fuel used: {used}");
}

#[test]
fn deterministic_ops_see_a_fixed_clock_and_seeded_randomness() {
    let job = |deterministic: bool| {
        TestJob::new(&format!(
            "name = \"det\"\n[ops.op]\ncomponent = \"{{probe}}\"\ndeterministic = {deterministic}\nconfig = {{ clock_random = true }}\n"
        ))
    };
    let fixed = job(true);
    let first = fixed.run(&[]).output("op")["clock_random"].clone();
    let second = fixed.run(&[]).output("op")["clock_random"].clone();
    assert_eq!(
        first, second,
        "a deterministic op saw different time or randomness"
    );
    assert_eq!(first["now_ms"], json!(946_684_800_000u64));
    let free = job(false);
    let a = free.run(&[]).output("op")["clock_random"]["random"].clone();
    let b = free.run(&[]).output("op")["clock_random"]["random"].clone();
    assert_ne!(a, b, "randomness of a normal op repeated");
}
