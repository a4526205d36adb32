"""process_file in Python: mapped once per file; returns the file's size in
bytes as JSON. Built with componentize-py against dynhost's WIT."""

import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


class Op(exports.Op):
    def run(self, ctx: types.Context, inputs: list[types.Input]) -> bytes | None:
        path_input = next((i for i in inputs if i.name == "path"), None)
        if path_input is None or not isinstance(path_input.value, types.InputValue_Single):
            raise Err("expected a single input named `path`")
        path = json.loads(path_input.value.value)
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise Err(f"cannot stat `{path}`: {e}")
        return json.dumps(size).encode()
