//! Issue 12: config schemas with defaults, checked before any op runs, and
//! config overrides from the command line (Dagster's `config_schema`,
//! `Field(default_value=...)` and `-c config.yaml`).

use crate::support::{TestJob, dynhost};

const JOB: &str = r#"name = "configured"
[ops.work]
component = "{probe}"
config = { read_file = "/d/f.txt" }
mounts = [{ host = "${config.data}", guest = "/d" }]
[ops.work.config_schema]
type = "object"
required = ["read_file"]
additionalProperties = false
[ops.work.config_schema.properties]
read_file = { type = "string" }
print = { type = "string", default = "from-schema" }
data = { type = "string", default = "one" }
count = { type = "integer", minimum = 1, default = 1 }
"#;

fn job() -> TestJob {
    let job = TestJob::new(JOB);
    job.write("one/f.txt", "first data")
        .write("two/f.txt", "second data");
    job
}

#[test]
fn defaults_are_filled_and_overrides_apply_before_the_run() {
    let job = job();
    let out = job.run(&[]);
    out.assert_code(0);
    let step = out.step("work");
    // The op got the schema's defaults, and the mount followed `data`.
    assert!(
        step["stdout"]
            .as_str()
            .unwrap()
            .contains("from-schema (stdout)"),
        "{step}"
    );
    assert_eq!(out.output("work")["read"]["ok"], "first data");

    // `--set` one value; a file of `[ops.NAME.config]` tables; `--set` last.
    job.write("over.toml", "[ops.work.config]\nprint = \"from-file\"\n");
    let set = job.run(&["--set", "ops.work.config.data=two"]);
    set.assert_code(0);
    assert_eq!(set.output("work")["read"]["ok"], "second data");
    let file = job.run(&["--config", "over.toml"]);
    assert!(
        file.step("work")["stdout"]
            .as_str()
            .unwrap()
            .contains("from-file")
    );
    // YAML too, as Dagster's `-c config.yaml`.
    job.write(
        "over.yaml",
        "ops:\n  work:\n    config:\n      print: from-yaml\n",
    );
    let yaml = job.run(&["--config", "over.yaml"]);
    yaml.assert_code(0);
    assert!(
        yaml.step("work")["stdout"]
            .as_str()
            .unwrap()
            .contains("from-yaml (stdout)"),
        "{}",
        yaml.stdout
    );
    job.write("broken.yml", "ops: [unclosed\n");
    let broken = job.run(&["--config", "broken.yml"]);
    broken.assert_code(2);
    assert!(
        broken.stderr.contains("broken.yml") && broken.stderr.contains("not YAML"),
        "{}",
        broken.stderr
    );
    let both = job.run(&[
        "--config",
        "over.toml",
        "--set",
        "ops.work.config.print=\"last\"",
    ]);
    assert!(
        both.step("work")["stdout"]
            .as_str()
            .unwrap()
            .contains("last (stdout)")
    );

    // The effective config is recorded with the run and shown.
    let show = dynhost(job.dir(), &["show", "latest"]);
    assert!(
        show.stdout.contains(
            r#"config work: {"count":1,"data":"one","print":"last","read_file":"/d/f.txt"}"#
        ),
        "{}",
        show.stdout
    );
}

#[test]
fn invalid_config_is_refused_before_any_op_runs() {
    let job = job();
    for command in ["validate", "run"] {
        let out = dynhost(
            job.dir(),
            &[command, "job.toml", "--set", "ops.work.config.count=0"],
        );
        out.assert_code(2);
        assert!(
            out.stderr
                .contains("op `work`: `config` does not match `config_schema`: at `/count`"),
            "{command}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("step_started"), "{}", out.stdout);
    }
    let typo = dynhost(
        job.dir(),
        &["validate", "job.toml", "--set", "ops.work.config.prnit=x"],
    );
    typo.assert_code(2);
    assert!(typo.stderr.contains("prnit"), "{}", typo.stderr);
    let unknown = dynhost(
        job.dir(),
        &["run", "job.toml", "--set", "ops.nope.config.x=1"],
    );
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .contains("`--set ops.nope.config.x=1`: the job has no op `nope` (its ops: work)"),
        "{}",
        unknown.stderr
    );
    let bad_form = dynhost(job.dir(), &["run", "job.toml", "--set", "work.print=x"]);
    bad_form.assert_code(2);
    assert!(
        bad_form.stderr.contains("ops.NAME.config.KEY=VALUE"),
        "{}",
        bad_form.stderr
    );
}

#[test]
fn mount_host_paths_may_name_environment_variables() {
    let job = job();
    job.rewrite(&JOB.replace("${config.data}", "${env.DYNHOST_TEST_DATA}"));
    let run = |value: Option<&str>| {
        let mut command = crate::support::command(job.dir(), &["run", "--json", "job.toml"]);
        match value {
            Some(v) => command.env("DYNHOST_TEST_DATA", v),
            None => command.env_remove("DYNHOST_TEST_DATA"),
        };
        crate::support::output(command)
    };
    let two = run(Some("two"));
    two.assert_code(0);
    assert_eq!(two.output("work")["read"]["ok"], "second data");
    let unset = run(None);
    unset.assert_code(2);
    assert!(
        unset
            .stderr
            .contains("names the environment variable `DYNHOST_TEST_DATA`, which is not set"),
        "{}",
        unset.stderr
    );
}
