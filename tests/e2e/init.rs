//! `dynhost init` scaffolds a project per language that builds and runs
//! unchanged (issue 6).

use crate::support::{componentize_c, dynhost, dynhost_with_path};

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
    let tools = (lang == "c").then(componentize_c);
    let out = dynhost_with_path(
        &project,
        &["run", "--build", "--json", "job.toml"],
        tools.as_deref(),
    );
    out.assert_code(0);
    assert_eq!(out.output("shout[hello]"), "HELLO", "{lang}");
    assert_eq!(out.output("shout[world]"), "WORLD", "{lang}");
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
