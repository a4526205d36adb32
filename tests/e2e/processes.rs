//! Issue 15, goal 2: `run --processes N` runs every step in N child
//! `dynhost worker-process`es instead of threads (interpreter ops fault
//! their fresh instances' pages, and threads pay for each other's faults).
//! A run must come out as it does on threads, and a child that dies fails
//! only the steps it had.

use crate::support::{Running, TestJob, dynhost};
use std::time::{Duration, Instant};

/// `emit` emits `keys` items (values: milliseconds for `work` to sleep);
/// `work` runs per key, with key `k3` returning 100 KiB (more than travels
/// inline on the wire); `all` collects.
fn job(keys: usize, sleep_ms: u64) -> String {
    let emit: Vec<String> = (0..keys)
        .map(|i| format!("{{ key = \"k{i}\", value = {sleep_ms} }}"))
        .collect();
    format!(
        r#"name = "processes"
[ops.emit]
component = "{{probe}}"
dynamic = true
config.emit = [{}]
[ops.work]
component = "{{probe}}"
inputs.v = {{ map = "emit" }}
config.sleep_ms_input = "v"
config.on_key = {{ k3 = "return_kib:100" }}
[ops.all]
component = "{{probe}}"
inputs.vs = {{ collect = "work" }}
"#,
        emit.join(", ")
    )
}

/// (op, status) of every step a run recorded.
fn recorded(job: &TestJob) -> Vec<(String, String)> {
    let conn = crate::support::store_sql(&job.dir().join(".dynhost/runs.db"));
    let mut stmt = conn
        .prepare("SELECT op, status FROM steps ORDER BY op, keys")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_run_in_worker_processes_equals_the_run_on_threads() {
    let threads = TestJob::new(&job(12, 0));
    let here = threads.run(&[]);
    here.assert_code(0);
    let processes = TestJob::new(&job(12, 0));
    let (children, there) = most_worker_processes(&processes, &["--processes", "2"]);
    there.assert_code(0);
    assert_eq!(children, 2, "the steps did not run in worker processes");
    assert_eq!(there.output("all"), here.output("all"));
    // The large value came through whole.
    let items = there.output("all")["inputs"]["vs"]["items"].clone();
    let k3 = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i[0] == serde_json::json!(["k3"]))
        .expect("k3 collected");
    assert!(k3[1].as_str().unwrap().len() > 100 << 10, "{}", &k3[1]);
    // Each step ran in a fresh instance, and was recorded once.
    for item in items.as_array().unwrap() {
        if item[0] != serde_json::json!(["k3"]) {
            assert_eq!(item[1]["counter"], 1, "{item}");
        }
    }
    let steps = recorded(&processes);
    assert_eq!(steps.len(), 1 + 12 + 1, "{steps:?}");
    assert!(
        steps.iter().all(|(_, status)| status == "succeeded"),
        "{steps:?}"
    );
}

/// The pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Runs `job` with `--processes 2` and `extra` arguments, and kills one child with SIGKILL while
/// both run their second `work` step (each takes 0.7 s and each child holds
/// 4), after `before_kill`. Returns the exit code, stderr and the
/// `step_finished` events.
fn kill_a_child_mid_run(
    job: &TestJob,
    extra: &[&str],
    before_kill: impl FnOnce(),
) -> (i32, String, Vec<serde_json::Value>) {
    let mut args = vec!["run", "--json", "job.toml", "--processes", "2"];
    args.extend_from_slice(extra);
    let mut run = Running::start(job.dir(), &args);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (_, line) = run
            .next_line(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|| panic!("no `work` step ended; stderr:\n{}", run.stderr()));
        let first = line.contains("\"step_finished\"") && line.contains("\"work[");
        lines.push(line);
        if first {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    before_kill();
    let children = worker_processes(run.pid());
    assert_eq!(children.len(), 2, "{children:?}");
    std::process::Command::new("kill")
        .args(["-9", &children[0].to_string()])
        .status()
        .unwrap();
    while let Some((_, line)) = run.next_line(Duration::from_secs(120)) {
        lines.push(line);
    }
    let code = run.wait(Duration::from_secs(120));
    let ended = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_finished")
        .collect();
    (code, run.stderr(), ended)
}

#[test]
fn a_killed_worker_process_fails_only_its_running_step_and_resume_runs_it() {
    let job = TestJob::new(&job(8, 700));
    let (code, stderr, ended) = kill_a_child_mid_run(&job, &[], || {});
    assert_eq!(code, 1, "{stderr}");
    let failed: Vec<&serde_json::Value> =
        ended.iter().filter(|e| e["status"] == "failed").collect();
    // Only the step it was running fails; the ones waiting in its pipe ran
    // elsewhere, and another child took its place.
    assert_eq!(failed.len(), 1, "{ended:#?}");
    let message = failed[0]["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("worker process") && message.contains("dynhost resume"),
        "{message}"
    );
    let work_ok = succeeded(&ended, "work");
    assert_eq!(work_ok, 7, "{ended:#?}");
    assert!(stderr.contains("started another in its place"), "{stderr}");
    // Nothing finished is lost: resume runs just the failed key.
    let resumed = dynhost(job.dir(), &["resume", "--json", "latest"]);
    resumed.assert_code(0);
    let ran: Vec<String> = resumed
        .steps_with("step_started")
        .into_iter()
        .filter(|s| s.starts_with("work["))
        .collect();
    assert_eq!(ran, [failed[0]["step"].as_str().unwrap()]);
    assert_eq!(
        resumed.output("all")["inputs"]["vs"]["items"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

/// An op rebuilt while its run runs: a child started since (in place of a
/// dead one) runs the code the run started with, from the compile cache,
/// as the run's threads would; without a cache it refuses the new bytes
/// rather than run what the run's locked plan does not name.
#[test]
fn a_replacement_worker_process_runs_the_locked_component_or_refuses_a_rebuilt_one() {
    let rebuilt_job = || {
        let job = TestJob::new(&job(8, 700).replace(
            "[ops.work]\ncomponent = \"{probe}\"",
            "[ops.work]\ncomponent = \"work.wasm\"",
        ));
        std::fs::copy(crate::support::probe(), job.dir().join("work.wasm")).unwrap();
        job
    };
    let rebuild = |job: &TestJob| {
        // Other bytes in the same file.
        let mut bytes = std::fs::read(job.dir().join("work.wasm")).unwrap();
        bytes.extend_from_slice(&[0, 6, 4]);
        bytes.extend_from_slice(b"edit1");
        std::fs::write(job.dir().join("work.wasm"), bytes).unwrap();
    };
    let refused = |ended: &[serde_json::Value]| {
        ended
            .iter()
            .filter(|e| {
                e["failure"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("changed since the run started"))
            })
            .count()
    };
    let cached = rebuilt_job();
    let (code, stderr, ended) = kill_a_child_mid_run(&cached, &[], || rebuild(&cached));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(refused(&ended), 0, "{ended:#?}");
    let work_ok = succeeded(&ended, "work");
    assert_eq!(work_ok, 7, "{ended:#?}");

    let uncached = rebuilt_job();
    let (code, stderr, ended) =
        kill_a_child_mid_run(&uncached, &["--no-cache"], || rebuild(&uncached));
    assert_eq!(code, 1, "{stderr}");
    // The steps that were waiting in the killed child's pipe went to its
    // replacement (the least loaded child), which refused them.
    assert!(refused(&ended) >= 1, "{ended:#?}");
}

/// How many steps of `op` the `step_finished` events say succeeded.
fn succeeded(ended: &[serde_json::Value], op: &str) -> usize {
    ended
        .iter()
        .filter(|e| e["status"] == "succeeded" && e["op"] == op)
        .count()
}

/// The `dynhost worker-process` children of `parent`.
fn worker_processes(parent: u32) -> Vec<u32> {
    children_of(parent)
        .into_iter()
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("worker-process"))
        })
        .collect()
}

/// The probe, grown past `procs::INTERPRETER_BYTES` (8 MiB) by a custom
/// section: the size of a component that embeds an interpreter.
fn write_padded_probe(job: &TestJob) {
    let mut bytes = std::fs::read(crate::support::probe()).unwrap();
    let name = b"padding";
    let payload = 8 << 20;
    let mut size = name.len() + 1 + payload;
    bytes.push(0); // a custom section
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.resize(bytes.len() + payload, 0);
    std::fs::write(job.dir().join("big.wasm"), bytes).unwrap();
}

/// Runs `dynhost run --json job.toml --max-concurrent 2 ARGS…`, and says
/// how many `dynhost worker-process` children it had at once, at most.
fn most_worker_processes(job: &TestJob, args: &[&str]) -> (usize, crate::support::CliOutput) {
    let mut all = vec!["run", "--json", "job.toml", "--max-concurrent", "2"];
    all.extend_from_slice(args);
    let mut run = Running::start(job.dir(), &all);
    let pid = run.pid();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (most, code) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(worker_processes(pid).len());
                std::thread::sleep(Duration::from_millis(10));
            }
            most
        });
        let code = run.wait(Duration::from_secs(120));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (watcher.join().unwrap(), code)
    });
    let mut stdout = String::new();
    while let Some((_, line)) = run.next_line(Duration::from_secs(10)) {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let stderr = run.stderr();
    (
        most,
        crate::support::CliOutput {
            code,
            stdout,
            stderr,
        },
    )
}

#[test]
fn interpreter_sized_ops_run_in_worker_processes_by_default_and_small_ones_on_threads() {
    let toml = |work: &str| {
        job(4, 500).replace(
            "[ops.work]\ncomponent = \"{probe}\"",
            &format!("[ops.work]\ncomponent = \"{work}\""),
        )
    };
    let big = TestJob::new(&toml("big.wasm"));
    write_padded_probe(&big);
    let (most, out) = most_worker_processes(&big, &[]);
    out.assert_code(0);
    assert_eq!(
        most, 2,
        "the 8 MiB op's steps did not run in two worker processes"
    );
    assert_eq!(
        out.output("all")["inputs"]["vs"]["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // `--processes 0` keeps it on threads; a small component never leaves them.
    let (most, out) = most_worker_processes(&big, &["--processes", "0"]);
    out.assert_code(0);
    assert_eq!(most, 0);
    let small = TestJob::new(&toml("{probe}"));
    let (most, out) = most_worker_processes(&small, &[]);
    out.assert_code(0);
    assert_eq!(most, 0);
}

#[test]
fn worker_processes_refuse_nats_and_a_missing_plan_clearly() {
    let job = TestJob::new(&job(2, 0));
    let both = dynhost(
        job.dir(),
        &[
            "run",
            "job.toml",
            "--processes",
            "2",
            "--nats",
            "nats://127.0.0.1:1",
        ],
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(
        both.stderr.contains("--processes") && both.stderr.contains("--nats"),
        "{}",
        both.stderr
    );
    // The hidden child command, started by hand with a plan that is not there.
    let alone = dynhost(
        job.dir(),
        &[
            "worker-process",
            "--runtime",
            r#"{"max_instances":1,"max_memory_bytes":1048576,"cache_dir":null,"max_wasm_stack_bytes":1048576,"enable_fuel":false,"fast_compile":false}"#,
            "--run-id",
            "r",
            "--values",
            ".",
            "missing-plan.json",
        ],
    );
    assert_eq!(alone.code, 2, "{}", alone.stderr);
    assert!(
        alone
            .stderr
            .contains("worker process: missing-plan.json: No such file"),
        "{}",
        alone.stderr
    );
}

/// Children that keep dying are replaced 3 times each, not for ever: then
/// the steps left fail, and the run ends.
#[test]
fn worker_processes_are_replaced_three_times_then_the_rest_fails() {
    let job = TestJob::new(&job(20, 300));
    let mut run = Running::start(
        job.dir(),
        &["run", "--json", "job.toml", "--processes", "1"],
    );
    let mut killed = Vec::new();
    for _ in 0..4 {
        let deadline = Instant::now() + Duration::from_secs(120);
        let child = loop {
            if let Some(child) = worker_processes(run.pid())
                .into_iter()
                .find(|c| !killed.contains(c))
            {
                break child;
            }
            assert!(Instant::now() < deadline, "no replacement after {killed:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        std::thread::sleep(Duration::from_millis(200));
        std::process::Command::new("kill")
            .args(["-9", &child.to_string()])
            .status()
            .unwrap();
        killed.push(child);
    }
    let code = run.wait(Duration::from_secs(120));
    let stderr = run.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.matches("started another in its place").count(),
        3,
        "{stderr}"
    );
    let mut out = String::new();
    while let Some((_, line)) = run.next_line(Duration::from_secs(10)) {
        out.push_str(&line);
    }
    assert!(out.contains("every worker process has ended"), "{out}");
    assert!(worker_processes(run.pid()).is_empty());
}
