// A dynhost op in JavaScript: the whole pattern in one component. Without
// inputs it emits one item per word of `config.words`; mapped over those
// items, it returns each word in capitals (failing for `config.fail_on`);
// collecting them, it joins them with spaces. (componentize-js has no file
// API unless the world imports `wasi:filesystem`, so this template takes its
// words from the config; the Rust, Python and C templates read a mount.)
//
// Return a Uint8Array for a value, or undefined for "no value" (when job.toml
// says `returns = { required = false }`: readers are skipped). Fail a step by
// throwing: it fails as `op-error` with the error's message, and its stack
// goes to the step's stderr.
import { emit } from 'dynhost:op/host@0.2.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The mapping key for any text: valid (1-128 of `A-Za-z0-9_.-`), unique and
// stable. Valid text is its own key; anything else is cleaned (other
// characters become `_`) and given a short hash of the original, so two
// texts that clean alike still get different keys.
export function keyFor(name) {
  const bytes = encoder.encode(name);
  if (/^[A-Za-z0-9_.-]+$/.test(name) && bytes.length <= 128 && name !== '.' && name !== '..') {
    return name;
  }
  let hash = 0xcbf29ce484222325n;
  for (const b of bytes) {
    hash = ((hash ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  const suffix = '-' + (hash & 0xffffffffffffn).toString(16).padStart(12, '0');
  const cleaned = Array.from(name, (c) => (/[A-Za-z0-9_.-]/.test(c) ? c : '_')).join('');
  return cleaned.slice(0, 128 - suffix.length) + suffix;
}

function run(ctx, inputs) {
  const config = JSON.parse(ctx.config);
  if (inputs.length === 0) {
    const words = config.words ?? [];
    words.forEach((word, position) => {
      // Metadata travels with the item (`dynhost show` lists it). s64 is a BigInt.
      const metadata = [{ label: 'position', value: { tag: 'integer', val: BigInt(position) } }];
      emit('result', keyFor(word), encoder.encode(JSON.stringify(word)), metadata);
    });
    return encoder.encode(JSON.stringify(words.length));
  }
  const value = inputs[0].value;
  if (value.tag === 'single') {
    const word = JSON.parse(decoder.decode(value.val));
    if (word === config.fail_on) {
      throw new Error(`cannot shout "${word}"`);
    }
    return encoder.encode(JSON.stringify(word.toUpperCase()));
  }
  const words = value.val.items.map((item) => JSON.parse(decoder.decode(item.value)));
  return encoder.encode(JSON.stringify(words.join(' ')));
}

export const op = {
  run(ctx, inputs) {
    try {
      return run(ctx, inputs);
    } catch (e) {
      // componentize-js turns a thrown string into `run`'s error; a thrown
      // Error object would abort the component instead. So report its stack
      // on stderr and throw its message.
      if (e instanceof Error) {
        console.error(`${e.name}: ${e.message}\n${e.stack ?? ''}`);
        throw e.message;
      }
      throw String(e);
    }
  },
};
