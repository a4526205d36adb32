"""A Python op that calls a service: GETs `config.url` (`{key}` replaced by
the step's key) with `wasi:http/outgoing-handler`, and returns the status
and body as JSON. A test fixture for dynhost's outgoing HTTP (issue 16)."""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import dynhost_op_types as types
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http


def get(url: str) -> tuple[int, bytes]:
    scheme, rest = url.split("://", 1)
    authority, _, path = rest.partition("/")
    request = http.OutgoingRequest(http.Fields())
    request.set_scheme(http.Scheme_Https() if scheme == "https" else http.Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query("/" + path)
    future = outgoing_handler.handle(request, None)
    while True:
        result = future.get()
        if result is None:
            future.subscribe().block()
            continue
        if isinstance(result, Ok) and isinstance(result.value, Ok):
            response = result.value.value
            break
        error = result.value.value if isinstance(result, Ok) else result.value
        raise Err(f"request failed: {error}")
    status = response.status()
    body = response.consume()
    stream = body.stream()
    data = b""
    while True:
        try:
            data += stream.blocking_read(65536)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise
    return status, data


class Op(exports.Op):
    def run(self, ctx: types.Context, inputs: list[types.Input]) -> bytes | None:
        config = json.loads(ctx.config)
        key = ctx.keys[-1] if ctx.keys else ""
        status, data = get(config["url"].replace("{key}", key))
        return json.dumps({"status": status, "body": data.decode("utf-8", "replace")}).encode()
