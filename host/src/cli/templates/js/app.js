// A dynhost op in JavaScript. Without inputs it emits one item per word in
// `config.words`; mapped over those items, it returns each word in capitals.
// Fail a step by throwing a string.
import { emitDynamic } from 'dynhost:op/host@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const op = {
  run(ctx, inputs) {
    const config = JSON.parse(ctx.config);
    if (inputs.length === 0) {
      const words = config.words ?? [];
      for (const word of words) {
        emitDynamic(word, encoder.encode(JSON.stringify(word)));
      }
      return encoder.encode(JSON.stringify(words.length));
    }
    const value = inputs[0].value;
    if (value.tag !== 'single') {
      throw 'expected a single input';
    }
    return encoder.encode(JSON.stringify(JSON.parse(decoder.decode(value.val)).toUpperCase()));
  },
};
