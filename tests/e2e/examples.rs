//! Every example under `guest-examples/` runs and matches its `expected.json`,
//! and the seed job's total equals a sum computed here from the sample files.

use crate::support::{dynhost, guest, root};
use serde_json::Value;

/// Example directories (with a job.toml); the walk must find exactly these.
const EXAMPLES: &[&str] = &["mixed", "mixed-c", "seed"];

/// Examples that need the Python, JavaScript or C toolchains. They always run
/// in CI; `DYNHOST_SKIP_POLYGLOT=1` skips them locally, printing SKIPPED.
const POLYGLOT: &[&str] = &["mixed", "mixed-c"];

#[test]
fn every_example_matches_its_expected_output() {
    guest("files_in_directory");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root().join("guest-examples")).expect("guest-examples") {
        let dir = entry.expect("entry").path();
        if !dir.join("job.toml").is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        found.push(name.clone());
        if POLYGLOT.contains(&name.as_str()) && std::env::var_os("DYNHOST_SKIP_POLYGLOT").is_some()
        {
            println!("SKIPPED example `{name}`: DYNHOST_SKIP_POLYGLOT is set");
            continue;
        }
        // `--build` runs each op's declared build command, as a user would.
        let out = dynhost(&dir, &["run", "--build", "--json", "job.toml"]);
        out.assert_code(0);
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
        )
        .expect("expected.json is JSON");
        for (step, value) in expected
            .as_object()
            .expect("expected.json maps step to value")
        {
            assert_eq!(&out.output(step), value, "example `{name}`, step `{step}`");
        }
    }
    found.sort();
    assert_eq!(found, EXAMPLES, "examples on disk differ from EXAMPLES");
}

#[test]
fn seed_job_total_equals_the_sum_of_the_sample_files() {
    guest("files_in_directory");
    let seed = root().join("guest-examples/seed");
    let mut files = 0u64;
    let mut total = 0u64;
    for entry in std::fs::read_dir(seed.join("sample")).expect("sample dir") {
        let meta = entry.expect("entry").metadata().expect("metadata");
        if meta.is_file() {
            files += 1;
            total += meta.len();
        }
    }
    assert!(files >= 3, "the sample directory should hold several files");
    let out = dynhost(&seed, &["run", "--json", "job.toml"]);
    out.assert_code(0);
    let summary = out.output("summarize_directory");
    assert_eq!(summary["files"], files);
    assert_eq!(summary["total_bytes"], total);
    assert_eq!(
        out.steps_with("step_finished")
            .iter()
            .filter(|s| s.starts_with("process_file["))
            .count() as u64,
        files
    );
}

/// The seed job's ops over a directory, with `config` for the emitter.
fn seed_over(dir: &std::path::Path, config: &str) -> String {
    let component = |name: &str| guest(name).display().to_string();
    format!(
        r#"name = "real"
[ops.files_in_directory]
component = "{}"
dynamic = true
config = {{ path = "/d"{config} }}
mounts = [{{ host = "{}", guest = "/d" }}]
[ops.process_file]
component = "{}"
mounts = [{{ host = "{}", guest = "/d" }}]
inputs.path = {{ map = "files_in_directory" }}
[ops.summarize_directory]
component = "{}"
inputs.sizes = {{ collect = "process_file" }}
"#,
        component("files_in_directory"),
        dir.display(),
        component("process_file"),
        dir.display(),
        component("summarize_directory"),
    )
}

/// Issue 11: the seed example on a real directory: names with spaces and
/// `+` that clean alike, a 200-character name, a link to a file, a
/// subdirectory, a name that is not UTF-8, a broken link.
#[test]
fn the_seed_example_works_on_real_directories() {
    use std::os::unix::ffi::OsStrExt;
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    std::fs::write(d.join("a b.txt"), "12").unwrap();
    std::fs::write(d.join("a+b.txt"), "123").unwrap();
    std::fs::write(d.join("n".repeat(200)), "1234").unwrap();
    std::fs::write(d.join("target.txt"), "12345").unwrap();
    std::os::unix::fs::symlink("target.txt", d.join("link")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/deep.txt"), "123456").unwrap();
    let job = crate::support::TestJob::new(&seed_over(d, ""));
    let out = job.run(&[]);
    out.assert_code(0);
    // Every file, the link as its target (5 bytes); keys valid and distinct.
    assert_eq!(
        out.output("summarize_directory"),
        serde_json::json!({ "files": 5, "total_bytes": 2 + 3 + 4 + 5 + 5 })
    );
    let keys = out.steps_with("step_finished");
    assert!(keys.contains(&"process_file[link]".to_owned()), "{keys:?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("process_file[a_b.txt-"))
            .count(),
        2,
        "{keys:?}"
    );
    // The skipped subdirectory is named in the emitter's log.
    let emitter = out.step("files_in_directory");
    assert!(
        emitter["log"]
            .as_str()
            .unwrap()
            .contains("skipped directory `/d/sub`; set `recursive = true`"),
        "{emitter}"
    );
    // Keys are stable: the same names give the same keys on the next run.
    let again = job.run(&[]);
    let mut first = keys.clone();
    let mut second = again.steps_with("step_finished");
    first.sort();
    second.sort();
    assert_eq!(first, second);
    // `recursive = true` walks into it.
    job.rewrite(&seed_over(d, ", recursive = true"));
    let deep = job.run(&[]);
    deep.assert_code(0);
    assert_eq!(deep.output("summarize_directory")["files"], 6);

    // A name WASI cannot carry fails the emitter, naming the directory and
    // the way out, instead of silently listing part of it.
    std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), "x").unwrap();
    job.rewrite(&seed_over(d, ", recursive = true"));
    let bad = job.run(&[]);
    bad.assert_code(1);
    let failure = bad.step("files_in_directory")["failure"].to_string();
    assert!(
        failure.contains("cannot be read") && failure.contains("skip_unreadable"),
        "{failure}"
    );
    job.rewrite(&seed_over(d, ", recursive = true, skip_unreadable = true"));
    let skipped = job.run(&[]);
    skipped.assert_code(0);
    assert_eq!(
        skipped.output("summarize_directory")["files"],
        6,
        "the rest is listed"
    );
    assert!(
        skipped.step("files_in_directory")["log"]
            .as_str()
            .unwrap()
            .contains("skipped an entry"),
        "{}",
        skipped.step("files_in_directory")
    );

    // A broken link fails its own key, as Dagster's `getsize` does.
    std::fs::remove_file(d.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt"))).unwrap();
    std::os::unix::fs::symlink("nowhere", d.join("broken")).unwrap();
    let broken = job.run(&[]);
    broken.assert_code(1);
    assert_eq!(broken.step("process_file[broken]")["status"], "failed");
}

/// Issue 15, goal 3: `--fast-compile` compiles with Winch, wasmtime's
/// baseline compiler; the Python and JavaScript ops of the mixed example
/// run under it with the same results (compiled afresh, no cache).
#[test]
fn the_mixed_example_runs_compiled_by_the_baseline_compiler() {
    if std::env::var_os("DYNHOST_SKIP_POLYGLOT").is_some() {
        println!("SKIPPED the mixed example under --fast-compile: DYNHOST_SKIP_POLYGLOT is set");
        return;
    }
    let dir = root().join("guest-examples/mixed");
    let out = dynhost(
        &dir,
        &[
            "run",
            "--build",
            "--json",
            "--no-store",
            "--no-cache",
            "--fast-compile",
            "job.toml",
        ],
    );
    out.assert_code(0);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    for (step, value) in expected.as_object().expect("an object") {
        assert_eq!(&out.output(step), value, "step `{step}`");
    }
}
