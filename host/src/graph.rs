//! Pictures of a job's graph: Graphviz DOT, Mermaid, and SVG laid out from
//! the DOT by the `layout-rs` crate (a maintained Sugiyama layout, so no
//! layout code of ours). `dynhost plan --format` and the web viewer
//! (`dynhost ui`) both draw with [`draw`]; the viewer passes each op's state
//! to colour its box.
//!
//! Ops are boxes; a plain input is a solid edge, a map a dashed edge
//! labelled `map OUTPUT`, a collect a thick blue edge labelled `collect`.
//! An op inside a map names its scope on a second line (`per emit.files`,
//! nested scopes joined with `›`), so nesting is visible without clusters,
//! which the layout library does not draw.

use crate::plan::{CollectTarget, Plan, Source};
use std::fmt::Write as _;

/// The output formats of [`draw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Graphviz DOT text.
    Dot,
    /// An SVG picture.
    Svg,
    /// A Mermaid flowchart.
    Mermaid,
}

/// What a run did with one op, for colouring its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// No step of it has finished (yet).
    Pending,
    /// The run is going and steps of it are still to come.
    Running,
    /// Every step that ran succeeded.
    Succeeded,
    /// Some steps failed but a tolerant collect ran without them.
    Tolerated,
    /// A step failed.
    Failed,
    /// Every step was skipped.
    Skipped,
}

impl OpState {
    /// Its fill colour, the same in the picture and the viewer's tables.
    pub fn colour(self) -> &'static str {
        match self {
            OpState::Pending => "#e5e7eb",
            OpState::Running => "#bfdbfe",
            OpState::Succeeded => "#bbf7d0",
            OpState::Tolerated => "#fde68a",
            OpState::Failed => "#fecaca",
            OpState::Skipped => "#f3f4f6",
        }
    }

    /// Its name, as CSS classes and tests see it.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Running => "running",
            OpState::Succeeded => "succeeded",
            OpState::Tolerated => "tolerated",
            OpState::Failed => "failed",
            OpState::Skipped => "skipped",
        }
    }
}

/// One op's box as a run sees it: its state and a line of counts.
#[derive(Debug, Clone)]
pub struct OpBox {
    /// How its steps ended.
    pub state: OpState,
    /// E.g. `98 ok · 2 failed`.
    pub counts: String,
}

/// Errors of [`draw`].
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The layout library refused the DOT we made (a dynhost bug).
    #[error("cannot lay out the graph of job `{job}`: {message} (a dynhost bug; please report it)")]
    Layout {
        /// The job's name.
        job: String,
        /// What the library said.
        message: String,
    },
}

/// Draws `plan` in `format`; `boxes` gives each op's run state (by op
/// index), or nothing for the plain graph.
///
/// # Errors
/// [`GraphError::Layout`] if the layout library cannot parse our DOT.
pub fn draw(plan: &Plan, format: Format, boxes: Option<&[OpBox]>) -> Result<String, GraphError> {
    match format {
        Format::Dot => Ok(dot(plan, boxes)),
        Format::Mermaid => Ok(mermaid(plan, boxes)),
        Format::Svg => svg(plan, boxes),
    }
}

/// An edge of the graph: from op, to op, kind.
enum Edge {
    Plain(Option<String>),
    Map(String),
    Collect,
}

fn edges(plan: &Plan) -> Vec<(usize, usize, Edge)> {
    let mut out = Vec::new();
    for (to, op) in plan.ops.iter().enumerate() {
        for input in &op.inputs {
            let edge = match &input.source {
                Source::Value(v) => Edge::Plain(
                    v.output
                        .map(|i| plan.ops[v.op].plain_outputs[i].name.clone()),
                ),
                Source::Item(d) => Edge::Map(d.output.clone()),
                Source::Collect(CollectTarget::Values(_) | CollectTarget::Items(_), _) => {
                    Edge::Collect
                }
            };
            out.push((input.source.op(), to, edge));
        }
    }
    out
}

/// The op's scope as a line: `per emit.files › split.parts`.
fn scope_line(plan: &Plan, op: usize) -> Option<String> {
    let scope = &plan.ops[op].scope;
    (!scope.is_empty()).then(|| {
        let levels: Vec<String> = scope
            .iter()
            .map(|d| format!("{}.{}", plan.ops[d.op].name, d.output))
            .collect();
        format!("per {}", levels.join(" › "))
    })
}

/// Text safe inside a DOT or Mermaid double-quoted string. Op and output
/// names are identifiers already; this keeps a future change from breaking
/// the picture.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\\' | '<' | '>' | '{' | '}' | '|'))
        .collect()
}

fn label(plan: &Plan, op: usize, boxes: Option<&[OpBox]>, newline: &str) -> String {
    let mut label = quoted(&plan.ops[op].name);
    if let Some(scope) = scope_line(plan, op) {
        label.push_str(newline);
        label.push_str(&quoted(&scope));
    }
    if let Some(b) = boxes.and_then(|b| b.get(op))
        && !b.counts.is_empty()
    {
        label.push_str(newline);
        label.push_str(&quoted(&b.counts));
    }
    label
}

fn dot(plan: &Plan, boxes: Option<&[OpBox]>) -> String {
    let mut out = String::from("digraph job {\n  rankdir=TB;\n");
    for op in 0..plan.ops.len() {
        let fill = boxes
            .and_then(|b| b.get(op))
            .map_or("#ffffff", |b| b.state.colour());
        let _ = writeln!(
            out,
            "  op{op} [shape=box, style=filled, fillcolor=\"{fill}\", label=\"{}\"];",
            label(plan, op, boxes, "\\n")
        );
    }
    for (from, to, edge) in edges(plan) {
        let attrs = match edge {
            Edge::Plain(None) => String::new(),
            Edge::Plain(Some(name)) => format!(" [label=\"{}\"]", quoted(&name)),
            Edge::Map(output) => format!(" [style=dashed, label=\"map {}\"]", quoted(&output)),
            Edge::Collect => " [color=\"#1d4ed8\", penwidth=3, label=\"collect\"]".to_owned(),
        };
        let _ = writeln!(out, "  op{from} -> op{to}{attrs};");
    }
    out.push_str("}\n");
    out
}

fn mermaid(plan: &Plan, boxes: Option<&[OpBox]>) -> String {
    let mut out = String::from("flowchart TD\n");
    for op in 0..plan.ops.len() {
        let _ = writeln!(out, "  op{op}[\"{}\"]", label(plan, op, boxes, "<br/>"));
    }
    for (from, to, edge) in edges(plan) {
        let arrow = match edge {
            Edge::Plain(None) => "-->".to_owned(),
            Edge::Plain(Some(name)) => format!("-->|{}|", quoted(&name)),
            Edge::Map(output) => format!("-.->|map {}|", quoted(&output)),
            Edge::Collect => "==>|collect|".to_owned(),
        };
        let _ = writeln!(out, "  op{from} {arrow} op{to}");
    }
    if let Some(boxes) = boxes {
        for (op, b) in boxes.iter().enumerate() {
            let _ = writeln!(out, "  style op{op} fill:{}", b.state.colour());
        }
    }
    out
}

fn svg(plan: &Plan, boxes: Option<&[OpBox]>) -> Result<String, GraphError> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let text = dot(plan, boxes);
    let fail = |message: String| GraphError::Layout {
        job: plan.job_name.clone(),
        message,
    };
    let graph = DotParser::new(&text).process().map_err(fail)?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut visual = builder.get();
    if visual.num_nodes() == 0 {
        return Ok(String::from(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"></svg>",
        ));
    }
    let mut writer = SVGWriter::new();
    visual.do_it(false, false, false, &mut writer);
    // Without the XML declaration, so the picture can sit inside HTML.
    let svg = writer.finalize();
    Ok(match svg.find("<svg") {
        Some(at) => svg[at..].to_owned(),
        None => svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("op.wasm");
        std::fs::write(&wasm, b"").expect("write");
        let job = dir.path().join("job.toml");
        std::fs::write(
            &job,
            format!(
                r#"name = "pic"
[ops.list]
component = "{c}"
dynamic = ["files"]
[ops.split]
component = "{c}"
inputs.f = {{ map = "list.files" }}
dynamic = ["parts"]
[ops.part]
component = "{c}"
inputs.p = {{ map = "split.parts" }}
[ops.per_file]
component = "{c}"
inputs.f = {{ map = "list.files" }}
inputs.ps = {{ collect = "part" }}
[ops.total]
component = "{c}"
inputs.all = {{ collect = "per_file" }}
inputs.first = "list"
"#,
                c = wasm.display()
            ),
        )
        .expect("write");
        crate::load_plan(&job).expect("plan")
    }

    #[test]
    fn dot_draws_every_op_and_each_edge_kind() {
        let plan = plan();
        let dot = draw(&plan, Format::Dot, None).expect("dot");
        for op in ["list", "split", "part", "per_file", "total"] {
            assert!(
                dot.contains(&format!("label=\"{op}")),
                "{op} missing: {dot}"
            );
        }
        assert!(dot.contains("style=dashed, label=\"map files\""), "{dot}");
        assert!(dot.contains("label=\"collect\""), "{dot}");
        assert!(
            dot.contains("per list.files › split.parts"),
            "nesting: {dot}"
        );
        // total reads list plainly: a solid edge without attributes.
        let list = plan
            .ops
            .iter()
            .position(|o| o.name == "list")
            .expect("list");
        let total = plan
            .ops
            .iter()
            .position(|o| o.name == "total")
            .expect("total");
        assert!(dot.contains(&format!("op{list} -> op{total};")), "{dot}");
    }

    #[test]
    fn svg_is_laid_out_and_coloured_by_state() {
        let plan = plan();
        let boxes: Vec<OpBox> = (0..plan.ops.len())
            .map(|i| OpBox {
                state: if i == 0 {
                    OpState::Failed
                } else {
                    OpState::Succeeded
                },
                counts: format!("{i} ok"),
            })
            .collect();
        let svg = draw(&plan, Format::Svg, Some(&boxes)).expect("svg");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("per_file"), "{svg}");
        // layout-rs writes fill colours as #rrggbb plus alpha.
        assert!(svg.contains("fecaca"), "failed colour missing");
        assert!(svg.contains("bbf7d0"), "succeeded colour missing");
    }

    #[test]
    fn mermaid_uses_dotted_maps_and_thick_collects() {
        let plan = plan();
        let m = draw(&plan, Format::Mermaid, None).expect("mermaid");
        assert!(m.starts_with("flowchart TD"));
        assert!(m.contains("-.->|map files|"), "{m}");
        assert!(m.contains("==>|collect|"), "{m}");
    }
}
