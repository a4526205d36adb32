//! Which stored steps a new run may reuse: `--only 'op[a,b]'` re-executes the
//! chosen keys and everything downstream of them, `--step 'op[a]'` only the
//! chosen steps (what reads them runs again only if their value changed: a
//! step is reused only with the same component, config and inputs), and
//! the rest is reused.

use crate::plan::{OpId, Plan};
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
    if groups
        .iter()
        .any(|g| g.split(',').any(|k| k.trim().is_empty()))
    {
        return Err(format!(
            "step selection `{text}` has an empty key: write `op`, `op[key]`, `op[key1,key2]` or `op[outer][inner]`"
        ));
    }
    let keys = match groups.as_slice() {
        [one] => one.split(',').map(|k| vec![k.trim().to_owned()]).collect(),
        many => vec![many.iter().map(|k| (*k).to_owned()).collect()],
    };
    Ok(Selection {
        op: op.to_owned(),
        keys,
    })
}

/// Checks a selection against the plan and the source run's steps: the op
/// exists, the keys are as deep as the op is mapped, and each selected key
/// path names a step the source run has (`stored`: every step's op and keys,
/// whatever its status).
///
/// # Errors
/// A message naming the unknown part and, for keys, the nearest stored ones.
pub fn check_selection(
    plan: &Plan,
    selection: &Selection,
    stored: &[(String, Vec<String>)],
) -> Result<(), String> {
    let Some(op) = plan.op_id(&selection.op) else {
        let known: Vec<&str> = plan.ops.iter().map(|o| o.name.as_str()).collect();
        return Err(format!(
            "the selection names unknown op `{}` (the job's ops: {})",
            selection.op,
            known.join(", ")
        ));
    };
    let depth = plan.ops[op].scope.len();
    for keys in &selection.keys {
        if keys.len() > depth {
            return Err(format!(
                "`{}[{}]` has {} key levels but `{}` is mapped {depth} level(s) deep; write {}",
                selection.op,
                keys.join("]["),
                keys.len(),
                selection.op,
                match depth {
                    0 => format!("`{}` (it has no keys)", selection.op),
                    _ => format!("at most {depth} `[key]` group(s)"),
                }
            ));
        }
        let of_op: Vec<&Vec<String>> = stored
            .iter()
            .filter(|(name, _)| *name == selection.op)
            .map(|(_, k)| k)
            .collect();
        if !of_op.iter().any(|k| k.starts_with(keys)) {
            let mut near: Vec<&Vec<String>> = of_op.clone();
            let shared = |k: &Vec<String>| {
                k.join("/")
                    .chars()
                    .zip(keys.join("/").chars())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            near.sort_by_key(|k| (std::cmp::Reverse(shared(k)), (*k).clone()));
            let near: Vec<String> = near
                .iter()
                .take(5)
                .map(|k| format!("{}[{}]", selection.op, k.join("][")))
                .collect();
            return Err(format!(
                "the source run has no step `{}[{}]`{}",
                selection.op,
                keys.join("]["),
                if near.is_empty() {
                    format!(" (it has no steps of `{}`)", selection.op)
                } else {
                    format!("; nearest: {}", near.join(", "))
                }
            ));
        }
    }
    Ok(())
}

/// Drops from `prior` the selected steps and, when `downstream` is set,
/// every step downstream of the selected op that shares their keys, so they
/// run again.
///
/// # Errors
/// A message naming the op when the plan has no op of that name.
pub fn without_selection(
    plan: &Plan,
    prior: Vec<PriorStep>,
    selection: &Selection,
    with_downstream: bool,
) -> Result<Vec<PriorStep>, String> {
    let Some(selected) = plan.op_id(&selection.op) else {
        let known: Vec<&str> = plan.ops.iter().map(|o| o.name.as_str()).collect();
        return Err(format!(
            "`--only` names unknown op `{}` (known: {})",
            selection.op,
            known.join(", ")
        ));
    };
    let affected = if with_downstream {
        downstream(plan, selected)
    } else {
        let mut only = vec![false; plan.ops.len()];
        only[selected] = true;
        only
    };
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
        let reads_hit = planned.inputs.iter().any(|input| hit[input.source.op()]);
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
        assert!(parse_selection("op[]").is_err());
        assert!(parse_selection("op[a,]").is_err());
        assert!(parse_selection("op[a").is_err());
    }
}
