//! Which stored steps a new run may reuse: `--only 'op[a,b]'` re-executes the
//! chosen keys and everything downstream of them, and reuses the rest.

use crate::plan::{CollectTarget, OpId, Plan, Source};
use crate::store::PriorStep;

/// Steps chosen on the command line: one op, and all its keys or some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The op.
    pub op: String,
    /// Key prefixes (`op[a,b]` is `[[a], [b]]`); empty means every key.
    pub keys: Vec<Vec<String>>,
}

/// Parses `op`, `op[a]`, `op[a,b]` or `op[a][x]`.
///
/// # Errors
/// A message saying what a selection looks like.
pub fn parse_selection(text: &str) -> Result<Selection, String> {
    let bad = || {
        format!(
            "cannot read step selection `{text}`: write `op`, `op[key]`, `op[key1,key2]` or `op[outer][inner]`"
        )
    };
    let Some(open) = text.find('[') else {
        return if text.is_empty() {
            Err(bad())
        } else {
            Ok(Selection {
                op: text.to_owned(),
                keys: Vec::new(),
            })
        };
    };
    let op = &text[..open];
    let rest = &text[open..];
    if op.is_empty() || !rest.ends_with(']') {
        return Err(bad());
    }
    let groups: Vec<&str> = rest[1..rest.len() - 1].split("][").collect();
    let keys = match groups.as_slice() {
        [one] => one.split(',').map(|k| vec![k.trim().to_owned()]).collect(),
        many => vec![many.iter().map(|k| (*k).to_owned()).collect()],
    };
    Ok(Selection {
        op: op.to_owned(),
        keys,
    })
}

/// Drops from `prior` the selected steps and every step downstream of the
/// selected op that shares their keys, so they run again.
///
/// # Errors
/// A message naming the op when the plan has no op of that name.
pub fn without_selection(
    plan: &Plan,
    prior: Vec<PriorStep>,
    selection: &Selection,
) -> Result<Vec<PriorStep>, String> {
    let Some(selected) = plan.op_id(&selection.op) else {
        let known: Vec<&str> = plan.ops.iter().map(|o| o.name.as_str()).collect();
        return Err(format!(
            "`--only` names unknown op `{}` (known: {})",
            selection.op,
            known.join(", ")
        ));
    };
    let affected = downstream(plan, selected);
    let hits = |keys: &[String]| {
        selection.keys.is_empty()
            || selection
                .keys
                .iter()
                .any(|s| keys.starts_with(s) || s.starts_with(keys))
    };
    Ok(prior
        .into_iter()
        .filter(|p| !(plan.op_id(&p.op).is_some_and(|id| affected[id]) && hits(&p.keys)))
        .collect())
}

/// `op` and every op that reads it, directly or not.
fn downstream(plan: &Plan, op: OpId) -> Vec<bool> {
    let mut hit = vec![false; plan.ops.len()];
    hit[op] = true;
    // Ops are in topological order, so one pass sees every reader after its source.
    for (id, planned) in plan.ops.iter().enumerate() {
        let reads_hit = planned.inputs.iter().any(|input| match &input.source {
            Source::Value(up) | Source::Collect(CollectTarget::Values(up), _) => hit[*up],
            Source::Item(d) | Source::Collect(CollectTarget::Items(d), _) => hit[d.op],
        });
        if reads_hit {
            hit[id] = true;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse() {
        assert_eq!(
            parse_selection("op").unwrap(),
            Selection {
                op: "op".into(),
                keys: vec![]
            }
        );
        assert_eq!(
            parse_selection("op[a,b]").unwrap().keys,
            vec![vec!["a".to_owned()], vec!["b".to_owned()]]
        );
        assert_eq!(
            parse_selection("op[a][x]").unwrap().keys,
            vec![vec!["a".to_owned(), "x".to_owned()]]
        );
        assert!(parse_selection("[a]").is_err());
        assert!(parse_selection("op[a").is_err());
    }
}
