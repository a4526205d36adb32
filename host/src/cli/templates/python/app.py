"""A dynhost op in Python: the whole pattern in one component. Without inputs
it reads words from the file `config.file` and emits one item per word;
mapped over those items, it returns each word in capitals (failing for
`config.fail_on`); collecting them, it joins them with spaces.

Return bytes for a value, or None for "no value" (when job.toml says
`returns = { required = false }`: the ops reading it are skipped). Fail a
step by raising any exception: it fails as `op-error` with the
exception's message, and its traceback goes to the step's stderr."""

import json
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


def key_for(name: str) -> str:
    """The mapping key for any text: valid (1-128 of `A-Za-z0-9_.-`), unique
    and stable. Valid text is its own key; anything else is cleaned (other
    characters become `_`) and given a short hash of the original, so two
    texts that clean alike still get different keys."""

    def ok(c: str) -> bool:
        return c.isascii() and (c.isalnum() or c in "_.-")

    if 0 < len(name.encode()) <= 128 and all(map(ok, name)) and name not in (".", ".."):
        return name
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    suffix = f"-{h & 0xFFFFFFFFFFFF:012x}"
    return "".join(c if ok(c) else "_" for c in name)[: 128 - len(suffix)] + suffix


def run(ctx: types.Context, inputs: list[types.Input]) -> bytes | None:
    config = json.loads(ctx.config)
    if not inputs:
        with open(config["file"]) as f:
            words = f.read().split()
        for position, word in enumerate(words):
            # Metadata travels with the item (`dynhost show` lists it).
            metadata = [types.MetadataEntry("position", types.MetadataValue_Integer(position))]
            host.emit("result", key_for(word), json.dumps(word).encode(), metadata)
        return json.dumps(len(words)).encode()
    value = inputs[0].value
    if isinstance(value, types.InputValue_Single):
        word = json.loads(value.value)
        if word == config.get("fail_on"):
            raise ValueError(f'cannot shout "{word}"')
        return json.dumps(word.upper()).encode()
    words = [json.loads(item.value) for item in value.value.items]
    return json.dumps(" ".join(words)).encode()


class Op(exports.Op):
    def run(self, ctx: types.Context, inputs: list[types.Input]) -> bytes | None:
        try:
            return run(ctx, inputs)
        except Err:
            raise
        except Exception as e:
            # The step fails as `op-error` with the message; the traceback
            # goes to its stderr (`dynhost logs RUN 'op[key]'`).
            traceback.print_exc()
            raise Err(str(e))
