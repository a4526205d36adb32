//! The CLI around a run: build commands, the plain summary, plan output.

use crate::support::{TestJob, command, dynhost, output, probe};

#[test]
fn run_build_runs_the_build_command_first() {
    let job = TestJob::new(&format!(
        "name = \"built\"\n[ops.a]\ncomponent = \"out/a.wasm\"\nbuild = \"mkdir -p out && cp '{}' out/a.wasm\"\n",
        probe()
    ));
    // Without the build the component is missing: a bad-input error.
    let missing = dynhost(job.dir(), &["run", "job.toml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("component `out/a.wasm` not found"),
        "{}",
        missing.stderr
    );
    let out = job.run(&["--build"]);
    out.assert_code(0);
    assert_eq!(out.output("a")["op"], "a");
    assert!(
        out.stderr.contains("building `a`: mkdir -p out"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failing_build_is_a_bad_input_error() {
    let job =
        TestJob::new("name = \"broken\"\n[ops.a]\ncomponent = \"a.wasm\"\nbuild = \"exit 3\"\n");
    let out = dynhost(job.dir(), &["build", "job.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "error: `job.toml`: op `a`: build command `exit 3` failed with exit status: 3"
        ),
        "{}",
        out.stderr
    );
}

/// dynhost turns transparent huge pages off for itself (its allocator's
/// 2 MiB pages were zeroed whole for a few bytes each) but gives the
/// user's build commands, which inherit the flag, the setting dynhost was
/// started with: the build records its own setting and dynhost's (its
/// parent), once started with huge pages allowed and once without.
#[test]
fn builds_keep_the_transparent_huge_pages_setting_dynhost_was_started_with() {
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    if !ours.lines().any(|l| l.starts_with("THP_enabled:")) {
        eprintln!("SKIPPED: this kernel does not report THP_enabled");
        return;
    }
    let job = TestJob::new(
        "name = \"thp\"\n[ops.a]\ncomponent = \"a.wasm\"\nbuild = \"grep THP_enabled /proc/$PPID/status > dynhost; grep THP_enabled /proc/self/status > own\"\n",
    );
    let read = |name: &str| {
        let text = std::fs::read_to_string(job.dir().join(name)).unwrap();
        text.split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    for started_with in ["1", "0"] {
        let mut build = command(job.dir(), &["build", "job.toml"]);
        set_thp_enabled(&mut build, started_with == "1");
        let out = output(build);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(read("dynhost"), "0", "dynhost kept transparent huge pages");
        assert_eq!(
            read("own"),
            started_with,
            "the build command did not get the setting dynhost was started with"
        );
    }
}

/// Starts `command` with transparent huge pages allowed or not.
#[expect(
    unsafe_code,
    reason = "pre_exec runs one async-signal-safe system call in the child"
)]
fn set_thp_enabled(command: &mut std::process::Command, enabled: bool) {
    use std::os::unix::process::CommandExt as _;
    let disable = std::ffi::c_ulong::from(!enabled);
    // SAFETY: prctl is a bare system call, safe between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Two builds at once take turns (one lock per user), so a run never loads
/// a component another build is half-way through writing: each build here
/// writes its start, waits, writes its end, and the two never interleave.
#[test]
fn concurrent_builds_take_turns() {
    let job = TestJob::new(
        "name = \"turns\"\n[ops.a]\ncomponent = \"a.wasm\"\nbuild = \"echo start >> log; sleep 0.4; echo end >> log\"\n",
    );
    let builds: Vec<_> = (0..3)
        .map(|_| {
            crate::support::command(job.dir(), &["build", "job.toml"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start dynhost build")
        })
        .collect();
    for mut build in builds {
        assert!(build.wait().expect("dynhost build").success());
    }
    let log = std::fs::read_to_string(job.dir().join("log")).expect("log");
    assert_eq!(log, "start\nend\n".repeat(3), "builds interleaved");
}

/// Issue 15, goal 3: `--fast-compile` runs baseline code at once, then
/// compiles the optimised code in a background process into the cache; the
/// next runs, with the flag or without, use it and compile nothing.
#[test]
fn fast_compile_compiles_optimised_code_in_the_background_for_later_runs() {
    let cache = tempfile::tempdir().unwrap();
    let job = TestJob::new("name = \"tiers\"\n[ops.a]\ncomponent = \"{probe}\"\n");
    let run = |flags: &[&str]| {
        let mut args = vec!["run", "--json"];
        args.extend(flags);
        args.push("job.toml");
        let mut run = command(job.dir(), &args);
        run.env("DYNHOST_CACHE_DIR", cache.path());
        output(run)
    };
    let compiled = || {
        std::fs::read_dir(cache.path())
            .map(|dir| {
                dir.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let first = run(&["--fast-compile"]);
    first.assert_code(0);
    assert_eq!(first.output("a")["op"], "a");
    assert!(
        first.stderr.contains("compiling ")
            && first
                .stderr
                .contains("compiling optimised code in the background"),
        "{}",
        first.stderr
    );
    // The baseline form at once, the optimised one when the background is done.
    assert!(compiled() >= 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while compiled() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no optimised code after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second = run(&["--fast-compile"]);
    second.assert_code(0);
    assert_eq!(second.output("a")["op"], "a");
    assert!(
        second
            .stderr
            .contains("optimised code of every op is cached; running that")
            && !second.stderr.contains("compiling "),
        "{}",
        second.stderr
    );
    let plain = run(&[]);
    plain.assert_code(0);
    assert!(!plain.stderr.contains("compiling "), "{}", plain.stderr);
    assert_eq!(compiled(), 2, "nothing compiled again");
}

#[test]
fn the_plain_summary_lists_ops_and_failed_keys() {
    let job = TestJob::new(
        r#"name = "summary"
[ops.emit]
component = "{probe}"
dynamic = true
config.emit = [{ key = "good", value = 1 }, { key = "bad", value = 2 }]
[ops.work]
component = "{probe}"
inputs.v = { map = "emit" }
config.on_key = { bad = "fail" }
"#,
    );
    let out = dynhost(job.dir(), &["run", "job.toml"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("job `summary` FAILED"),
        "{}",
        out.stderr
    );
    let row = out
        .stderr
        .lines()
        .find(|l| l.starts_with("work "))
        .expect("a row for `work`");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["work", "2", "1", "1", "0"],
        "keys, ok, failed, skipped: {row}"
    );
    assert!(
        out.stderr
            .contains("  work[bad] failed (op-error): probe was told to fail"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.starts_with("work[good] = {"), "{}", out.stdout);
}

#[test]
fn plan_prints_the_resolved_scopes() {
    let job = TestJob::new(
        "name = \"p\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\n[ops.work]\ncomponent = \"{probe}\"\ninputs.v = { map = \"emit\" }\n",
    );
    // For people: ops in run order, what each runs once per, its inputs.
    let text = dynhost(job.dir(), &["plan", "job.toml"]);
    text.assert_code(0);
    assert!(
        text.stdout
            .starts_with("job `p` (job.toml): 2 ops, in run order"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("op work\n  runs       once per key of `emit.result`\n  input      v = the item of `emit.result`"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("  limits     memory "),
        "{}",
        text.stdout
    );
    // For tools: `--json`.
    let out = dynhost(job.dir(), &["plan", "--json", "job.toml"]);
    out.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["ops"][1]["name"], "work");
    assert_eq!(
        plan["ops"][1]["scope"],
        serde_json::json!([{ "op": 0, "output": "result" }])
    );
}

/// Issue 11: a component being compiled is named (a large one takes seconds);
/// one from the compile cache is not.
#[test]
fn compiling_a_component_says_so_once() {
    let job = TestJob::new("name = \"c\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\n");
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "job.toml"];
        all.extend_from_slice(args);
        let mut command = crate::support::command(job.dir(), &all);
        command.env("DYNHOST_CACHE_DIR", cache.path().join("c"));
        crate::support::output(command)
    };
    let first = run(&[]);
    first.assert_code(0);
    assert!(
        first.stderr.contains("compiling probe.wasm (") && first.stderr.contains("cached)…"),
        "{}",
        first.stderr
    );
    let second = run(&[]);
    second.assert_code(0);
    assert!(!second.stderr.contains("compiling"), "{}", second.stderr);
    // `--fast-compile` with the optimised form cached runs that, compiling
    // nothing (its baseline compile and the background tier-up are
    // `fast_compile_compiles_optimised_code_in_the_background_for_later_runs`).
    let fast = run(&["--fast-compile"]);
    fast.assert_code(0);
    assert!(
        !fast.stderr.contains("compiling")
            && fast.stderr.contains("optimised code of every op is cached"),
        "{}",
        fast.stderr
    );
}

/// Issue 15, goal 3: a changed component (here: the probe with a custom
/// section appended, as an edit that leaves its code alone) is compiled
/// again, but its functions come from Cranelift's function cache, filled by
/// the first compile; the run works the same.
#[test]
fn a_changed_component_reuses_the_functions_of_earlier_compiles() {
    let mut edited = std::fs::read(crate::support::probe()).unwrap();
    // A custom section (id 0): size, then name and payload.
    let name = b"dynhost-test-edit";
    edited.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    edited.extend_from_slice(name);
    edited.push(1);
    let job = TestJob::new(
        "name = \"c\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\nconfig.emit_count = 2\n[ops.work]\ncomponent = \"edited.wasm\"\ninputs.v = { map = \"emit\" }\n",
    );
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let mut command = crate::support::command(job.dir(), &["run", "job.toml", "--no-store"]);
        command.env("DYNHOST_CACHE_DIR", cache.path().join("c"));
        crate::support::output(command)
    };
    // First: the probe alone is compiled (and fills the function cache).
    std::fs::copy(crate::support::probe(), job.dir().join("edited.wasm")).unwrap();
    let first = run();
    first.assert_code(0);
    assert!(!first.stderr.contains("reusing"), "{}", first.stderr);
    // Then the edited copy: compiled, with its functions reused.
    std::fs::write(job.dir().join("edited.wasm"), &edited).unwrap();
    let second = run();
    second.assert_code(0);
    assert!(
        second.stderr.contains("compiling edited.wasm ("),
        "{}",
        second.stderr
    );
    let line = second
        .stderr
        .lines()
        .find(|l| l.starts_with("compiled edited.wasm in "))
        .unwrap_or_else(|| panic!("no `compiled` line: {}", second.stderr));
    // "reusing N of M functions": the code is unchanged, so nearly all
    // are (a few percent of Cranelift's cache keys differ from compile to
    // compile: 87-95% of the probe's functions were reused in trials).
    let counts: Vec<usize> = line
        .split(['(', ' '])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        matches!(counts.as_slice(), [n, m] if *n > 0 && n * 10 >= m * 8),
        "{line}"
    );
    assert!(
        second.stderr.contains("job `c` succeeded"),
        "{}",
        second.stderr
    );
}

/// Issue 15, goal 2: a step's `--json` stats split its time into making
/// the fresh instance (`instantiate_secs`, part of `wall_secs`) and tearing
/// it down after (`teardown_secs`), so users see where a key's time goes.
#[test]
fn step_stats_say_how_long_instantiating_and_teardown_took() {
    let job = TestJob::new(
        "name = \"p\"\n[ops.emit]\ncomponent = \"{probe}\"\ndynamic = true\nconfig.emit = [{ key = \"a\", value = 40 }]\n[ops.work]\ncomponent = \"{probe}\"\ninputs.v = { map = \"emit\" }\nconfig.sleep_ms_input = \"v\"\n",
    );
    let out = job.run(&[]);
    out.assert_code(0);
    let stats = &out.step("work[a]")["stats"];
    let secs = |name: &str| {
        stats[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {stats}"))
    };
    // The op sleeps 40 ms in `run`: in the wall time, not in instantiating.
    assert!(secs("wall_secs") >= 0.04, "{stats}");
    assert!(secs("instantiate_secs") > 0.0, "{stats}");
    assert!(
        secs("instantiate_secs") < secs("wall_secs") - 0.035,
        "{stats}"
    );
    // Whole microseconds: a small instance may be torn down in under one.
    assert!(secs("teardown_secs") >= 0.0, "{stats}");
}

/// Issue 11: `run --watch` runs again when a file beside the job changes;
/// ops with `cache = true` reuse their unchanged steps; Ctrl-C ends it.
#[test]
fn watch_runs_again_on_a_change_and_reuses_unchanged_cached_steps() {
    let text = |word: &str| {
        format!(
            "name = \"w\"\n[ops.emit]\ncomponent = \"{{probe}}\"\ndynamic = true\ncache = true\nconfig.emit_count = 3\n[ops.work]\ncomponent = \"{{probe}}\"\ninputs.v = {{ map = \"emit\" }}\nconfig.print = \"{word}\"\n"
        )
    };
    let job = TestJob::new(&text("one"));
    let run = crate::support::Running::start(job.dir(), &["run", "--watch", "--json", "job.toml"]);
    let finished = |line: &str| line.contains("\"run_finished\"");
    run.wait_for_line(std::time::Duration::from_secs(60), finished);
    // A different length, so the change shows even where mtimes are coarse.
    job.rewrite(&text("second, longer"));
    // The second round: the emitter is reused (its config did not change),
    // `work` runs with the new config.
    let mut reused = Vec::new();
    let mut printed_two = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some((_, line)) =
        run.next_line(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "step_reused" {
            reused.push(event["step"].as_str().unwrap().to_owned());
        }
        if event["event"] == "step_finished"
            && event["stdout"].as_str().unwrap().contains("second, longer")
        {
            printed_two = true;
        }
        if finished(&line) {
            break;
        }
    }
    assert_eq!(reused, ["emit"], "stderr: {}", run.stderr());
    assert!(
        printed_two,
        "work did not run with the new config: {}",
        run.stderr()
    );
    let mut run = run;
    run.signal("INT");
    assert_eq!(run.wait(std::time::Duration::from_secs(10)), 130);
    assert!(run.stderr().contains("changed: "), "{}", run.stderr());
}

/// Issue 11: C ops need only the dynhost binary besides clang: `dynhost
/// componentize` writes the bindings and refuses what it cannot wrap, naming
/// the file.
#[test]
fn componentize_writes_c_bindings_and_names_a_bad_module() {
    let dir = tempfile::tempdir().unwrap();
    let out = dynhost(
        dir.path(),
        &[
            "componentize",
            "bindings",
            crate::support::root().join("wit").to_str().unwrap(),
            "gen",
        ],
    );
    out.assert_code(0);
    for file in [
        "dynamic_op.h",
        "dynamic_op.c",
        "dynamic_op_component_type.o",
    ] {
        assert!(dir.path().join("gen").join(file).is_file(), "{file}");
    }
    std::fs::write(dir.path().join("core.wasm"), b"not wasm").unwrap();
    let bad = dynhost(dir.path(), &["componentize", "new", "core.wasm", "op.wasm"]);
    bad.assert_code(2);
    assert!(
        bad.stderr
            .contains("`core.wasm` cannot be made a component")
            && bad.stderr.contains("clang"),
        "{}",
        bad.stderr
    );
    let missing = dynhost(dir.path(), &["componentize", "bindings", "nowhere", "gen"]);
    missing.assert_code(2);
    assert!(missing.stderr.contains("`nowhere`"), "{}", missing.stderr);
}
