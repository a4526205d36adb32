//! `dynhost init` scaffolds a project per language that builds and runs
//! unchanged (issue 6).

use crate::support::dynhost;

fn scaffold_build_and_run(lang: &str) {
    if lang != "rust" && std::env::var_os("DYNHOST_SKIP_POLYGLOT").is_some() {
        println!("SKIPPED `dynhost init --lang {lang}`: DYNHOST_SKIP_POLYGLOT is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    dynhost(dir.path(), &["init", "--lang", lang, "demo"]).assert_code(0);
    let project = dir.path().join("demo");
    assert!(
        project.join("wit/op.wit").is_file(),
        "the WIT contract is copied in"
    );
    // Nothing but the toolchains from the registries: C ops are wrapped by
    // `dynhost componentize`, which `dynhost build` finds as $DYNHOST.
    let out = dynhost(&project, &["run", "--build", "--json", "job.toml"]);
    out.assert_code(0);
    // The whole pattern: emit (from a mounted file, or the config for JS),
    // map, collect in emission order.
    assert_eq!(out.output("join"), "HELLO WORLD!", "{lang}");
    // Every language's key helper gives the same valid, unique key.
    let mut keys = out.steps_with("step_finished");
    keys.retain(|k| k.starts_with("shout["));
    keys.sort();
    assert_eq!(
        keys,
        ["shout[hello]", "shout[world_-bf7d7e4fe2d6]"],
        "{lang}: key helper"
    );
    // The natural way to fail (an exception in Python and JavaScript) fails
    // the step as `op-error` with its message; the stack goes to stderr.
    let text = std::fs::read_to_string(project.join("job.toml")).unwrap();
    std::fs::write(
        project.join("job.toml"),
        text.replace("# config = { fail_on", "config = { fail_on"),
    )
    .unwrap();
    let failed = dynhost(&project, &["run", "--json", "job.toml"]);
    failed.assert_code(1);
    let step = failed.step("shout[hello]");
    assert_eq!(step["failure"]["kind"], "op-error", "{lang}: {step}");
    assert_eq!(
        step["failure"]["message"], "cannot shout \"hello\"",
        "{lang}: {step}"
    );
    let stderr = step["stderr"].as_str().unwrap();
    match lang {
        "python" => assert!(stderr.contains("Traceback"), "{lang}: {step}"),
        "js" => assert!(stderr.contains("cannot shout"), "{lang}: {step}"),
        _ => {}
    }
    let again = dynhost(dir.path(), &["init", "--lang", lang, "demo"]);
    assert_eq!(again.code, 2, "init must not overwrite an existing project");
}

#[test]
fn init_rust() {
    scaffold_build_and_run("rust");
}

#[test]
fn init_python() {
    scaffold_build_and_run("python");
}

#[test]
fn init_js() {
    scaffold_build_and_run("js");
}

#[test]
fn init_c() {
    scaffold_build_and_run("c");
}
