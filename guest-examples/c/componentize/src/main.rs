//! `componentize-c bindings WIT_DIR OUT_DIR`: writes the C bindings (`.c`,
//! `.h` and the `_component_type.o` that embeds the world) for `dynamic-op`.
//! `componentize-c new CORE.wasm OUT.wasm`: adapts a wasm32-wasi reactor
//! module to WASI 0.2 and encodes it as a component.

use anyhow::{Context, bail};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bindings", wit, out] => bindings(Path::new(wit), Path::new(out)),
        ["new", core, out] => new(Path::new(core), Path::new(out)),
        _ => bail!(
            "usage: componentize-c bindings WIT_DIR OUT_DIR | componentize-c new CORE.wasm OUT.wasm"
        ),
    }
}

fn bindings(wit: &Path, out: &Path) -> anyhow::Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some("dynamic-op"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out)?;
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

fn new(core: &Path, out: &Path) -> anyhow::Result<()> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
