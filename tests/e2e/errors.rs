//! Bad input fails before any op runs, with exit code 2 and a message naming
//! the file, the op and what to do. Each case is a golden file:
//! `tests/jobs/invalid/<case>/job.toml` -> `expected.err` (exact stderr, with
//! the workspace path written as `$ROOT`). `DYNHOST_BLESS=1` rewrites them.

use crate::support::{dynhost, guest, root};

#[test]
fn invalid_jobs_match_their_golden_errors() {
    guest("probe");
    guest("wrong_world");
    guest("wrong_import");
    guest("wrong_run");
    let cases = root().join("tests/jobs/invalid");
    let mut seen = 0;
    let mut mismatches = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&cases)
        .expect("cases")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        seen += 1;
        for command in ["validate", "run"] {
            let out = dynhost(&dir, &[command, "job.toml"]);
            assert_eq!(
                out.code, 2,
                "case `{name}` ({command}): expected exit 2; stderr:\n{}",
                out.stderr
            );
            assert!(
                out.stdout.is_empty(),
                "case `{name}` ({command}) wrote to stdout: {}",
                out.stdout
            );
            // "compiling X…" (and "compiled X in …" when functions came
            // from earlier compiles) appear only when the compile cache misses.
            let got: String = out
                .stderr
                .lines()
                .filter(|l| !l.starts_with("compiling ") && !l.starts_with("compiled "))
                .map(|l| format!("{l}\n"))
                .collect();
            let got = got.replace(&root().display().to_string(), "$ROOT");
            let golden = dir.join("expected.err");
            if std::env::var_os("DYNHOST_BLESS").is_some() {
                std::fs::write(&golden, &got).expect("bless");
                continue;
            }
            let expected = std::fs::read_to_string(&golden).unwrap_or_default();
            if got != expected {
                mismatches.push(format!(
                    "case `{name}` ({command}):\n--- expected\n{expected}--- got\n{got}"
                ));
            }
        }
    }
    assert!(
        seen >= 12,
        "expected at least 12 invalid-job cases, found {seen}"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_missing_job_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dynhost(dir.path(), &["run", "nope.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: cannot read job file `nope.toml`: "),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = dynhost(&root(), &["run", "--max-concurrent", "0", "job.toml"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}
