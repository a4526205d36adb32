//! Checks, when a component is loaded, that its `dynhost:op/op.run` export
//! has the type the WIT declares. wasmtime checks export types only when an
//! instance looks the function up, so without this a component whose `run`
//! takes the wrong arguments would pass `validate` and then fail every step.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentItem, Type};

/// `run`'s parameters and result in `wit/op.wit`, as [`describe`] renders them.
const EXPECTED_PARAMS: &[(&str, &str)] = &[
    (
        "ctx",
        "record{run-id:string,op:string,keys:list<string>,config:string}",
    ),
    (
        "inputs",
        "list<record{name:string,value:variant{single(list<u8>),collected(record{items:list<record{keys:list<string>,value:list<u8>}>,failed:list<record{keys:list<string>,kind:string,message:string}>})}}>",
    ),
];
/// `run`'s result in 0.1.0 and 0.2.0.
const V1_RESULT: &str = "result<list<u8>,string>";
const V2_RESULT: &str = "result<option<list<u8>>,string>";

/// Which version of the `dynhost:op` world a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// `dynhost:op@0.1.0`.
    V1,
    /// `dynhost:op@0.2.0`, the current one.
    V2,
}

impl Version {
    /// The package version, as WIT writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "0.1.0",
            Version::V2 => "0.2.0",
        }
    }
}

/// The version the component's `dynhost:op/op@…` export names; the current
/// one when it has none (so the error names what to build against).
pub(crate) fn op_version(engine: &Engine, component: &Component) -> Version {
    let ty = component.component_type();
    let v1 = ty
        .exports(engine)
        .any(|(name, _)| name == "dynhost:op/op@0.1.0");
    if v1 { Version::V1 } else { Version::V2 }
}

/// Why `component`'s `run` export does not match the WIT of `version`, if it does not.
pub(crate) fn check_run(
    engine: &Engine,
    component: &Component,
    version: Version,
) -> Result<(), String> {
    let ty = component.component_type();
    let Some(op) = ty.exports(engine).find_map(|(name, export)| {
        match (name.starts_with("dynhost:op/op@"), export.ty) {
            (true, ComponentItem::ComponentInstance(instance)) => Some(instance),
            _ => None,
        }
    }) else {
        // `instantiate_pre` already reported a missing interface.
        return Ok(());
    };
    let Some(ComponentItem::ComponentFunc(run)) = op.get_export(engine, "run").map(|e| e.ty) else {
        return Err("its `dynhost:op/op` export has no function `run`".into());
    };
    let params: Vec<(String, String)> = run
        .params()
        .map(|(name, ty)| (name.to_owned(), describe(&ty)))
        .collect();
    let results: Vec<String> = run.results().map(|ty| describe(&ty)).collect();
    let params_match = params.len() == EXPECTED_PARAMS.len()
        && params
            .iter()
            .zip(EXPECTED_PARAMS)
            .all(|((_, got), (_, want))| got == want);
    let (expected, wit_result) = match version {
        Version::V1 => (V1_RESULT, "result<list<u8>, string>"),
        Version::V2 => (V2_RESULT, "result<option<list<u8>>, string>"),
    };
    if !params_match || results != [expected] {
        let got = params
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "its `run` is `run({got})` with other types than `run(ctx: context, inputs: list<input>) -> {wit_result}`"
        ));
    }
    Ok(())
}

/// A canonical text of a component value type, with field and case names.
fn describe(ty: &Type) -> String {
    let list = |items: Vec<String>| items.join(",");
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", describe(&l.ty())),
        Type::Record(r) => format!(
            "record{{{}}}",
            list(
                r.fields()
                    .map(|f| format!("{}:{}", f.name, describe(&f.ty)))
                    .collect()
            )
        ),
        Type::Tuple(t) => format!("tuple<{}>", list(t.types().map(|t| describe(&t)).collect())),
        Type::Variant(v) => format!(
            "variant{{{}}}",
            list(
                v.cases()
                    .map(|c| match &c.ty {
                        Some(ty) => format!("{}({})", c.name, describe(ty)),
                        None => c.name.to_owned(),
                    })
                    .collect()
            )
        ),
        Type::Enum(e) => format!("enum{{{}}}", list(e.names().map(str::to_owned).collect())),
        Type::Option(o) => format!("option<{}>", describe(&o.ty())),
        Type::Result(r) => format!(
            "result<{},{}>",
            r.ok().map_or("_".into(), |t| describe(&t)),
            r.err().map_or("_".into(), |t| describe(&t))
        ),
        other => format!("{other:?}"),
    }
}
