"""Call a tool by name: validate input against its schema, run the handler, validate the output.

Every failure becomes the one error shape of DESIGN.md. Invalid input is refused before the handler
runs, so it cannot change state. Everything that leaves passes through the redaction layer.
"""

from __future__ import annotations

import json
import logging
import math
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from butler_skill.errors import ButlerError, InternalError, InvalidInput
from butler_skill.host.context import Context
from butler_skill.host.manifest import Manifest, ToolSpec, load_manifest
from butler_skill.host.redaction import redact_payload, redact_value

log = logging.getLogger("butler.host")


@cache
def _validator(schema_path: str) -> Any:
    import jsonschema

    with open(schema_path, encoding="utf-8") as fh:
        schema = json.load(fh)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "/"


def validate_input(manifest: Manifest, tool: ToolSpec, payload: Any) -> BaseModel:
    validator = _validator(str(manifest.schema_path(tool.input_schema)))
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"{tool.name}: input {_pointer(first.absolute_path)}: {_describe(first)}",
            tool=tool.name, path=_pointer(first.absolute_path),
            errors=[{"path": _pointer(e.absolute_path), "message": _describe(e)} for e in errors[:10]],
        )
    try:
        return tool.input_model.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        path = _pointer(err["loc"])
        raise InvalidInput(f"{tool.name}: input {path}: {err['msg']}", tool=tool.name, path=path) from None


def _describe(error: Any) -> str:
    # jsonschema's messages quote the offending value; for long values (a pasted key?) say what kind it is.
    if error.validator in ("additionalProperties", "required", "enum", "type", "anyOf", "oneOf"):
        msg = str(error.message)
        return msg if len(msg) <= 160 else f"failed {error.validator}"
    return f"failed {error.validator} ({error.validator_value!r})" if error.validator_value is not None else "invalid"


def validate_output(manifest: Manifest, tool: ToolSpec, result: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = result.model_dump(mode="json", by_alias=True)
    if not _finite(data):
        # JSON has no Infinity or NaN: a figure like that is a bug (every input figure is bounded).
        raise InternalError(f"{tool.name}: handler output holds a non-finite number", tool=tool.name)
    errors = list(_validator(str(manifest.schema_path(tool.output_schema))).iter_errors(data))
    if errors:
        raise InternalError(f"{tool.name}: handler output broke its schema at {_pointer(errors[0].absolute_path)}",
                            tool=tool.name)
    return data


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def run_handler(tool: ToolSpec, ctx: Context, inp: BaseModel) -> BaseModel:
    if tool.is_async:
        import asyncio  # only async handlers pay for the event loop's import

        result: BaseModel = asyncio.run(tool.function(ctx, inp))
    else:
        result = tool.function(ctx, inp)
    return result


def call_tool(name: str, payload: Any, ctx: Context, manifest: Manifest | None = None) -> dict[str, Any]:
    """Run one tool; always returns a JSON-ready envelope: {"ok": true, "result": ...} or the error shape."""
    manifest = manifest or load_manifest()
    # A key pasted into any field (a label, a request id, a PRD) is masked before it can be stored or echoed.
    payload = redact_value(payload, ctx)
    try:
        tool = manifest.tool(name)
        if tool is None:
            raise InvalidInput(f"unknown tool {name!r}", tool=name, known=[t.name for t in manifest.tools])
        inp = validate_input(manifest, tool, payload)
        data = validate_output(manifest, tool, run_handler(tool, ctx, inp))
        envelope: dict[str, Any] = {"ok": True, "result": data}
    except ButlerError as exc:
        envelope = exc.to_payload()
    except Exception as exc:
        log.exception("tool %s failed", name)
        envelope = InternalError(f"internal error in {name}: {type(exc).__name__}", tool=name).to_payload()
    return redact_payload(envelope, ctx)


def error_exit_code(envelope: dict[str, Any]) -> int:
    if envelope.get("ok"):
        return 0
    return 2 if envelope["error"]["code"] in ("invalid_input", "not_found") else 1
