//! The default sandbox (issue 2, point 9): nothing but declared mounts, no
//! environment, no network, captured stdio.

use crate::support::TestJob;

fn job_with(config: &str, extra: &str) -> TestJob {
    TestJob::new(&format!(
        "name = \"sandbox\"\n[ops.peek]\ncomponent = \"{{probe}}\"\nconfig = {config}\n{extra}\n"
    ))
}

#[test]
fn no_file_system_without_a_mount() {
    for path in ["/etc/passwd", "/", "../../etc/passwd", "job.toml"] {
        let out = job_with(&format!("{{ read_file = \"{path}\" }}"), "").run(&[]);
        out.assert_code(0);
        let read = &out.output("peek")["read"];
        assert!(
            read["err"].is_string(),
            "{path} was readable without a mount: {read}"
        );
    }
}

#[test]
fn mounts_are_visible_and_read_only_by_default() {
    let job = job_with(
        "{ read_file = \"/data/in.txt\", write_file = \"/data/out.txt\" }",
        "mounts = [{ host = \"data\", guest = \"/data\" }]",
    );
    job.write("data/in.txt", "hello from the host");
    let out = job.run(&[]);
    out.assert_code(0);
    let value = out.output("peek");
    assert_eq!(value["read"]["ok"], "hello from the host");
    assert!(
        value["write"]["err"].is_string(),
        "wrote to a read-only mount: {value}"
    );
    assert!(!job.dir().join("data/out.txt").exists());
}

#[test]
fn environment_is_only_what_the_op_declares() {
    // SAFETY of the assertion: the test process has PATH and HOME; the op must see neither.
    let out = job_with("{ env = true }", "env = { GREETING = \"hi\" }").run(&[]);
    out.assert_code(0);
    assert_eq!(
        out.output("peek")["env"],
        serde_json::json!([["GREETING", "hi"]])
    );
}

#[test]
fn no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let out = job_with(&format!("{{ connect = \"{addr}\" }}"), "").run(&[]);
    out.assert_code(0);
    let connect = &out.output("peek")["connect"];
    assert!(
        connect["err"].is_string(),
        "op reached the host's loopback: {connect}"
    );
}

#[test]
fn stdout_stderr_and_log_are_captured_per_step() {
    let job = job_with("{ print = \"hello\" }", "");
    let out = job.run(&[]);
    out.assert_code(0);
    let step = out.step("peek");
    assert_eq!(step["stdout"], "hello (stdout)\n");
    assert_eq!(step["stderr"], "hello (stderr)\n");
    assert_eq!(step["log"], "[info] hello (log)\n");
    // Without --json, captured output is shown per step on stderr, never on
    // the host's own stdout.
    let plain = crate::support::dynhost(job.dir(), &["run", "job.toml"]);
    plain.assert_code(0);
    assert!(
        plain.stderr.contains("peek stdout: hello (stdout)"),
        "{}",
        plain.stderr
    );
    assert!(
        plain.stderr.contains("peek stderr: hello (stderr)"),
        "{}",
        plain.stderr
    );
    assert!(!plain.stdout.contains("hello (stdout)"), "{}", plain.stdout);
}
