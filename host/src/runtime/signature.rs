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
const EXPECTED_RESULT: &str = "result<list<u8>,string>";

/// Why `component`'s `run` export does not match the WIT, if it does not.
pub(crate) fn check_run(engine: &Engine, component: &Component) -> Result<(), String> {
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
    if !params_match || results != [EXPECTED_RESULT] {
        let got = params
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "its `run` is `run({got})` with other types than `run(ctx: context, inputs: list<input>) -> result<list<u8>, string>`"
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
