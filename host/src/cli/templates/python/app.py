"""A dynhost op in Python. Without inputs it emits one item per word in
`config.words`; mapped over those items, it returns each word in capitals.
Fail a step with `raise Err("message")`."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


class Op(exports.Op):
    def run(self, ctx: types.Context, inputs: list[types.Input]) -> bytes:
        config = json.loads(ctx.config)
        if not inputs:
            words = config.get("words", [])
            for word in words:
                host.emit_dynamic(word, json.dumps(word).encode())
            return json.dumps(len(words)).encode()
        value = inputs[0].value
        if not isinstance(value, types.InputValue_Single):
            raise Err("expected a single input")
        return json.dumps(json.loads(value.value).upper()).encode()
