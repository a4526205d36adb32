//! Test harness: builds the guest components once per test process, writes
//! jobs into fresh temp dirs and runs the real `dynhost` binary on them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds `tests/guests` and `guest-examples` once (cargo's freshness check
/// keeps them current) and returns the path of component `name`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        for workspace in ["tests/guests", "guest-examples"] {
            build_guests(&root().join(workspace))?;
        }
        Ok(())
    });
    if let Err(message) = built {
        panic!("{message}");
    }
    let path = guest_dir().join(format!("{name}.wasm"));
    assert!(path.is_file(), "no guest component at {}", path.display());
    path
}

fn guest_dir() -> PathBuf {
    root().join("target/guests/wasm32-wasip2/release")
}

fn build_guests(workspace: &Path) -> Result<(), String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(root().join("target/guests"))
        .current_dir(workspace)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "building guests in {} failed:\n{}\nhint: `rustup target add wasm32-wasip2`",
        workspace.display(),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The probe test op's path, as TOML string content.
pub fn probe() -> String {
    guest("probe").display().to_string()
}

/// What one `dynhost` invocation did.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout as JSON lines (`--json`).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The final `run_finished` event.
    pub fn finished(&self) -> Value {
        let events = self.events();
        let last = events
            .last()
            .unwrap_or_else(|| panic!("no events; stderr:\n{}", self.stderr))
            .clone();
        assert_eq!(last["event"], "run_finished", "{last}");
        last
    }

    /// The value of final output step `step`.
    pub fn output(&self, step: &str) -> Value {
        let finished = self.finished();
        let outputs = finished["outputs"].as_array().expect("outputs").clone();
        outputs
            .into_iter()
            .find(|o| o["step"] == step)
            .map(|o| o["value"].clone())
            .unwrap_or_else(|| panic!("no output `{step}` in {finished:#}"))
    }

    /// The `run_finished` summary of `op` (counts, retries, accounting).
    pub fn op_summary(&self, op: &str) -> Value {
        let finished = self.finished();
        finished["ops"]
            .as_array()
            .expect("ops")
            .iter()
            .find(|o| o["op"] == op)
            .unwrap_or_else(|| panic!("no op `{op}` in {finished:#}"))
            .clone()
    }

    /// The `step_finished` event of `step`.
    pub fn step(&self, step: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| {
                panic!(
                    "step `{step}` did not finish; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// Names of steps with `event`, in the order they happened.
    pub fn steps_with(&self, event: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Asserts the exit code, showing both streams if it differs.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `dynhost args...` in `cwd` with a shared compile cache.
pub fn dynhost(cwd: &Path, args: &[&str]) -> CliOutput {
    output(command(cwd, args))
}

/// The user store of every test run (`$XDG_DATA_HOME/dynhost`), so tests
/// never write to the real home. Tests that look at runs use their job's own
/// `.dynhost/` (see [`TestJob::new`]) or their own `XDG_DATA_HOME`.
pub fn test_user_data() -> PathBuf {
    root().join("target/dynhost-test-user-data")
}

/// `dynhost args...` in `cwd` with the shared compile cache and no tracing.
pub fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynhost"));
    command
        .args(args)
        .current_dir(cwd)
        .env(
            "DYNHOST_CACHE_DIR",
            root().join("target/dynhost-test-cache"),
        )
        .env("XDG_DATA_HOME", test_user_data())
        .env_remove("DYNHOST_HOME")
        .env_remove("DYNHOST_LOG");
    command
}

/// Runs a prepared `dynhost` command to the end.
pub fn output(mut command: Command) -> CliOutput {
    let output = command.output().expect("run dynhost");
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A job in its own temp dir, which is a project with its own run store
/// (`.dynhost/`), so each test sees only its own runs.
pub struct TestJob {
    dir: tempfile::TempDir,
}

impl TestJob {
    /// Writes `toml` as `job.toml`; `{probe}` stands for the probe component.
    pub fn new(toml: &str) -> Self {
        let job = Self::without_store(toml);
        std::fs::create_dir(job.dir().join(".dynhost")).expect("mkdir .dynhost");
        job
    }

    /// Like [`TestJob::new`], without a project store: runs go to the user
    /// store (wherever `XDG_DATA_HOME` points).
    pub fn without_store(toml: &str) -> Self {
        let job = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        job.rewrite(toml);
        job
    }

    /// Replaces `job.toml` (e.g. to fix an op before a resume); `{probe}`
    /// stands for the probe component.
    pub fn rewrite(&self, toml: &str) {
        std::fs::write(
            self.dir().join("job.toml"),
            toml.replace("{probe}", &probe())
                .replace("{fetch}", &guest("fetch").display().to_string()),
        )
        .expect("write job");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating parents) next to the job.
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let path = self.dir().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
        self
    }

    /// `dynhost run --json job.toml` plus `args`, failing the test if it
    /// takes longer than `within`.
    pub fn run_within(&self, within: std::time::Duration, args: &[&str]) -> CliOutput {
        let mut all = vec!["run", "--json", "job.toml"];
        all.extend_from_slice(args);
        dynhost_within(self.dir(), &all, within)
    }

    /// `dynhost run --json job.toml` plus `args`.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["run", "--json", "job.toml"];
        all.extend_from_slice(args);
        dynhost(self.dir(), &all)
    }
}

/// A `dynhost` process started in the background, whose stdout lines are
/// timestamped as they arrive (for tests of what is reported when).
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(std::time::Instant, String)>,
    errors: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts `dynhost args...` in `cwd`.
    pub fn start(cwd: &Path, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = command(cwd, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dynhost");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = errors.clone();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((std::time::Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            errors,
            reader: Some(reader),
        }
    }

    /// The next stdout line and when it arrived, or `None` at the end of
    /// output or after `within`.
    pub fn next_line(&self, within: std::time::Duration) -> Option<(std::time::Instant, String)> {
        self.lines.recv_timeout(within).ok()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`INT`, `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Waits until a stdout line satisfies `want`, failing after `within`.
    pub fn wait_for_line(&self, within: std::time::Duration, want: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + within;
        while let Some((_, line)) =
            self.next_line(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if want(&line) {
                return;
            }
        }
        panic!("no such line within {within:?}; stderr:\n{}", self.stderr());
    }

    /// What the process wrote to stderr so far (all of it once it exited).
    pub fn stderr(&self) -> String {
        self.errors.lock().unwrap().clone()
    }

    /// Waits up to `within` for the exit code; kills the process and fails
    /// the test if it is still running then.
    pub fn wait(&mut self, within: std::time::Duration) -> i32 {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("dynhost did not finish within {within:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dynhost args...` in `cwd`, killing it and failing the test if it
/// runs longer than `within` (a hang must fail a test, not stall CI).
pub fn dynhost_within(cwd: &Path, args: &[&str], within: std::time::Duration) -> CliOutput {
    let child = command(cwd, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start dynhost");
    wait_within(child, within, &format!("dynhost {args:?}"))
}

/// Waits for a started `dynhost` (stdout and stderr piped) to end, killing
/// it and failing the test after `within`.
pub fn wait_within(
    child: std::process::Child,
    within: std::time::Duration,
    what: &str,
) -> CliOutput {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(within) {
        Ok(output) => output.expect("run dynhost"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not finish within {within:?}");
        }
    };
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The run store at `db` for SQL, every packed step first written out as
/// its `steps` row (a new run packs its plain successes until something
/// reads them); `None` while the file is not there or cannot be unpacked
/// yet (a run holding the write lock).
pub fn try_store_sql(db: &Path) -> Option<rusqlite::Connection> {
    if !db.exists() {
        return None;
    }
    dynhost::store::SqliteStore::open(db)
        .ok()?
        .unpack_all()
        .ok()?;
    rusqlite::Connection::open(db).ok()
}

/// [`try_store_sql`] for a store that must be there.
pub fn store_sql(db: &Path) -> rusqlite::Connection {
    try_store_sql(db).unwrap_or_else(|| panic!("cannot open or unpack {}", db.display()))
}
