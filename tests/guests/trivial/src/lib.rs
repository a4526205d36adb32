//! `trivial`: the cheapest possible op, for measuring dynhost's own per-key
//! cost. With config `{"emit": N}` it emits N items keyed `k0`.. (each value
//! padded to `"pad": B` bytes if given); otherwise it returns the first
//! input's bytes (or nothing; only the first `"keep": B` bytes if given;
//! after waiting `"wait_us": N` if given). No JSON library: config is
//! parsed by hand so the op's own work stays negligible.

// Built against the first version of the WIT on purpose: the e2e suite runs
// it next to 0.2.0 components (both versions stay linked), and the bench's
// bare-wasmtime baseline uses the same 0.1.0 bindings.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "dynamic-op" });

use dynhost::op::host::emit_dynamic;
use dynhost::op::types::InputValue;
use exports::dynhost::op::op::{Context, Guest, Input};

struct Trivial;

impl Guest for Trivial {
    fn run(ctx: Context, inputs: Vec<Input>) -> Result<Vec<u8>, String> {
        if let Some(n) = emit_count(&ctx.config) {
            let delay = number_after(&ctx.config, "\"sleep_us\":").unwrap_or(0);
            let pad = number_after(&ctx.config, "\"pad\":").unwrap_or(0) as usize;
            for i in 0..n {
                if delay > 0 {
                    std::thread::sleep(std::time::Duration::from_micros(delay));
                }
                let mut value = i.to_string().into_bytes();
                if value.len() < pad {
                    value.resize(pad, b'.');
                }
                emit_dynamic(&format!("k{i}"), &value)?;
            }
            return Ok(n.to_string().into_bytes());
        }
        // `"wait_us": N`: a mapped step that waits N µs (time not spent on
        // a core, for the scale-out benchmark).
        if let Some(us) = number_after(&ctx.config, "\"wait_us\":") {
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
        let keep = number_after(&ctx.config, "\"keep\":").map_or(usize::MAX, |k| k as usize);
        Ok(match inputs.into_iter().next().map(|i| i.value) {
            Some(InputValue::Single(mut bytes)) => {
                bytes.truncate(keep);
                bytes
            }
            Some(InputValue::Collected(c)) => c.items.len().to_string().into_bytes(),
            None => Vec::new(),
        })
    }
}

fn emit_count(config: &str) -> Option<u64> {
    number_after(config, "\"emit\":")
}

fn number_after(config: &str, field: &str) -> Option<u64> {
    let rest = &config[config.find(field)? + field.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

export!(Trivial);
