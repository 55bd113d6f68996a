"""Call a tool by name: validate input against its schema, run the handler, validate the output.

Every failure becomes the one error shape of DESIGN.md. Invalid input is refused before the handler
runs, so it cannot change state. Everything that leaves passes through the redaction layer.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from butler_skill.errors import ButlerError, InternalError, InvalidInput
from butler_skill.host.context import Context
from butler_skill.host.manifest import Manifest, ToolSpec, load_manifest
from butler_skill.host.quick import error_exit_code as error_exit_code
from butler_skill.host.redaction import redact_payload, redact_value
from butler_skill.host.validators import compiled as _fast
from butler_skill.host.validators import finite
from butler_skill.host.validators import schema as _schema

log = logging.getLogger("butler.host")


@cache
def _validator(schema_path: str) -> Any:
    """The detailed validator (python-jsonschema): used only to explain a failure, and imported only then."""
    import jsonschema

    schema = _schema(schema_path)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _errors(schema_path: str, payload: Any) -> list[Any]:
    if _fast(schema_path).is_valid(payload):
        return []
    return list(_validator(schema_path).iter_errors(payload))


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "/"


def validate_input(manifest: Manifest, tool: ToolSpec, payload: Any) -> BaseModel:
    errors = sorted(_errors(str(manifest.schema_path(tool.input_schema)), payload), key=lambda e: list(e.absolute_path))
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
    if not finite(data):
        # JSON has no Infinity or NaN: a figure like that is a bug (every input figure is bounded).
        raise InternalError(f"{tool.name}: handler output holds a non-finite number", tool=tool.name)
    errors = _errors(str(manifest.schema_path(tool.output_schema)), data)
    if errors:
        raise InternalError(f"{tool.name}: handler output broke its schema at {_pointer(errors[0].absolute_path)}",
                            tool=tool.name)
    return data


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
