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
