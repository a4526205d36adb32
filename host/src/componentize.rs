//! Components from C (or any wasm32-wasi core module): the C bindings for
//! dynhost's world, and a core module wrapped as a component, as
//! `wit-bindgen c` and `wasm-tools component new --adapt` do. Built in, so a
//! C op needs clang, wasi-libc and the dynhost binary, nothing installed
//! from a dynhost checkout.

use std::path::{Path, PathBuf};

/// Why componentizing failed.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// The WIT could not be read or has no `dynamic-op` world.
    #[error("cannot read the WIT in `{dir}`: {reason}")]
    Wit {
        /// The WIT directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("`{path}`: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The core module cannot be made a component.
    #[error(
        "`{path}` cannot be made a component: {reason}; build it with `clang --target=wasm32-wasi -mexec-model=reactor` against the bindings of `dynhost componentize bindings`"
    )]
    Encode {
        /// The core module.
        path: PathBuf,
        /// wit-component's words.
        reason: String,
    },
}

fn io(path: &Path, e: impl std::fmt::Display) -> ComponentizeError {
    ComponentizeError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Writes the C bindings of the `dynamic-op` world in `wit` into `out`:
/// `dynamic_op.h`, `dynamic_op.c` and `dynamic_op_component_type.o` (which
/// embeds the world in the core module, for [`wrap`]).
///
/// # Errors
/// [`ComponentizeError`] naming the directory or file.
pub fn bindings(wit: &Path, out: &Path) -> Result<(), ComponentizeError> {
    let wit_error = |e: anyhow::Error| ComponentizeError::Wit {
        dir: wit.to_owned(),
        reason: format!("{e:#}"),
    };
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(wit).map_err(wit_error)?;
    let world = resolve
        .select_world(&[package], Some("dynamic-op"))
        .map_err(wit_error)?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(wit_error)?;
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Wraps the wasm32-wasi reactor module `core` (built against the bindings
/// of [`bindings`]) into a component at `out`, adapting WASI preview 1 to
/// WASI 0.2.
///
/// # Errors
/// [`ComponentizeError`] naming the file.
pub fn wrap(core: &Path, out: &Path) -> Result<(), ComponentizeError> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    let module = std::fs::read(core).map_err(|e| io(core, e))?;
    let encode_error = |e: anyhow::Error| ComponentizeError::Encode {
        path: core.to_owned(),
        reason: format!("{e:#}"),
    };
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .map_err(encode_error)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(encode_error)?
        .validate(true)
        .encode()
        .map_err(encode_error)?;
    std::fs::write(out, component).map_err(|e| io(out, e))
}
