//! `dynhost init --lang L NAME`: scaffolds an op project that `dynhost build`
//! and `dynhost run` accept unchanged: the WIT contract copied in, a build
//! command set, and a minimal op that emits and returns.

use anyhow::Context as _;
use std::path::Path;

/// The languages `init` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen (`rustup target add wasm32-wasip2`).
    Rust,
    /// Python with componentize-py (`pip install componentize-py==0.25.1`).
    Python,
    /// JavaScript with componentize-js (Node.js 20; `npm install` in the project).
    Js,
    /// C with clang and wasi-libc, wrapped by `dynhost componentize`.
    C,
}

const WIT: &str = include_str!("../../../wit/op.wit");
const JOB: &str = include_str!("templates/job.toml");

/// Writes the project into `dir/NAME`.
///
/// # Errors
/// An invalid name, an existing directory, or a failed write.
pub fn init(lang: Lang, name: &str, dir: &Path) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    anyhow::ensure!(
        valid,
        "project name `{name}` must start with a-z and use only a-z, 0-9, `-` and `_`"
    );
    let root = dir.join(name);
    anyhow::ensure!(
        !root.exists(),
        "`{}` already exists; choose another name",
        root.display()
    );
    let artifact = name.replace('-', "_");
    let (files, component, build): (Vec<(&str, &str)>, String, &str) = match lang {
        Lang::Rust => (
            vec![
                ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
                ("src/lib.rs", include_str!("templates/rust/lib.rs")),
            ],
            format!("target/wasm32-wasip2/release/{artifact}.wasm"),
            "cargo build --release --target wasm32-wasip2",
        ),
        Lang::Python => (
            vec![("app.py", include_str!("templates/python/app.py"))],
            format!("{artifact}.wasm"),
            "componentize-py -d wit -w dynamic-op componentize app -o {{component}}",
        ),
        Lang::Js => (
            vec![
                ("app.js", include_str!("templates/js/app.js")),
                ("package.json", include_str!("templates/js/package.json")),
            ],
            format!("{artifact}.wasm"),
            "npm install --no-audit --no-fund >&2 && node_modules/.bin/componentize-js app.js --wit wit -n dynamic-op -d http fetch-event -o {{component}}",
        ),
        Lang::C => (
            vec![
                ("op.c", include_str!("templates/c/op.c")),
                ("build.sh", include_str!("templates/c/build.sh")),
            ],
            format!("{artifact}.wasm"),
            "sh build.sh",
        ),
    };
    let build = build.replace("{{component}}", &component);
    // Every template reads its words from a mounted file, except JavaScript:
    // componentize-js has no file API unless the world imports
    // `wasi:filesystem`, so its words come from the config.
    let (split_does, split_settings) = match lang {
        Lang::Js => (
            "takes its words from its config",
            r#"config = { words = ["hello", "world!"] }"#,
        ),
        _ => (
            "reads words from data/words.txt (the `data` directory is mounted\n# read-only at /data)",
            "config = { file = \"/data/words.txt\" }\nmounts = [{ host = \"data\", guest = \"/data\" }]",
        ),
    };
    let job = JOB
        .replace("{{build}}", &build)
        .replace("{{component}}", &component)
        .replace("{{split_does}}", split_does)
        .replace("{{split_settings}}", split_settings);
    let mut all = files;
    all.push(("wit/op.wit", WIT));
    all.push(("job.toml", &job));
    if lang != Lang::Js {
        all.push(("data/words.txt", "hello world!\n"));
    }
    for (path, text) in all {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(
            &path,
            text.replace("{{name}}", name)
                .replace("{{artifact}}", &artifact),
        )
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    note!(
        "created `{}`; build and run it with: dynhost run --build {}/job.toml",
        root.display(),
        root.display()
    );
    Ok(())
}
