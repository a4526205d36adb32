// summarize_directory in JavaScript: collects every file's size and returns
// {"files": n, "total_bytes": sum} as JSON. Built with componentize-js.
import { log } from 'dynhost:op/host@0.2.0';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export const op = {
  run(ctx, inputs) {
    const sizes = inputs.find((input) => input.name === 'sizes');
    if (!sizes || sizes.value.tag !== 'collected') {
      throw 'expected a collected input named `sizes`';
    }
    let total = 0;
    for (const item of sizes.value.val.items) {
      total += JSON.parse(decoder.decode(item.value));
    }
    const files = sizes.value.val.items.length;
    log('info', `summarized ${files} files in JavaScript`);
    return encoder.encode(JSON.stringify({ files, total_bytes: total }));
  },
};
