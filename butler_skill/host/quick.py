"""A one-shot call of a read tool without pydantic: what a cold `butler call get_status` runs.

The read tools (get_status, get_available_keys, monitor_usage) have one implementation in plain values
(handlers/reads.py); their pydantic handlers validate its result into their models. Here the same function
runs with the input checked by the compiled validator of the tool's generated input schema (defaults filled
from it) and the output checked against the generated output schema, so a cold process loads neither pydantic
nor python-jsonschema nor the models of the other tools.

Whatever this path is not sure of goes to the full path (`dispatch.call_tool`), which gives the exact answer:
an input the compiled validator refuses (the full path explains it), a value pydantic would coerce, an output
that breaks its schema or a bug. Errors raised by the read itself (config_error, storage_error) are the same
exceptions the full path turns into the same error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from butler_skill.errors import ButlerError
from butler_skill.host.manifest import Manifest, ToolSpec, load_manifest
from butler_skill.host.redaction import redact_payload, redact_value
from butler_skill.host.validators import finite, is_valid, schema

if TYPE_CHECKING:
    from butler_skill.host.context import Context

# The handler skill.yaml names -> its implementation in plain values (handlers/reads.py). Keyed by the
# manifest's handler, so a tool moved to another handler leaves this path.
LIGHT_HANDLERS = {
    "butler_skill.handlers.tokens:get_status": "get_status",
    "butler_skill.handlers.tokens:get_available_keys": "get_available_keys",
    "butler_skill.handlers.tokens:monitor_usage": "monitor_usage",
}


def light_function(tool: ToolSpec) -> Callable[[Context, dict[str, Any]], dict[str, Any]] | None:
    name = LIGHT_HANDLERS.get(tool.handler)
    if name is None:
        return None
    from butler_skill.handlers import reads

    fn: Callable[[Context, dict[str, Any]], dict[str, Any]] = getattr(reads, name)
    return fn


def arguments(schema_path: str, payload: Any) -> dict[str, Any] | None:
    """The input with the schema's defaults filled, when it is valid and pydantic would take it as it is
    (an integer field given 3.0 is valid JSON Schema that pydantic turns into 3: left to the full path)."""
    if not isinstance(payload, dict) or not is_valid(schema_path, payload):
        return None
    props: dict[str, Any] = schema(schema_path).get("properties", {})
    for name, value in payload.items():
        if props.get(name, {}).get("type") == "integer" and type(value) is not int:
            return None
    return {name: payload[name] if name in payload else prop.get("default") for name, prop in props.items()}


def call(name: str, payload: Any, ctx: Context, manifest: Manifest | None = None) -> dict[str, Any]:
    """Run one tool; the same envelope as `dispatch.call_tool`, which it uses for every tool but the reads."""
    manifest = manifest or load_manifest()
    tool = manifest.tool(name)
    fn = light_function(tool) if tool is not None else None
    if tool is None or fn is None:
        return _full(name, payload, ctx, manifest)
    # A key pasted into any field is masked before anything reads it, as on the full path.
    args = arguments(str(manifest.schema_path(tool.input_schema)), redact_value(payload, ctx))
    if args is None:
        return _full(name, payload, ctx, manifest)
    try:
        data = fn(ctx, args)
    except ButlerError as exc:
        return redact_payload(exc.to_payload(), ctx)
    except Exception:
        return _full(name, payload, ctx, manifest)  # a bug: the full path logs it and answers `internal`
    try:
        checked = finite(data) and is_valid(str(manifest.schema_path(tool.output_schema)), data)
    except Exception:  # not JSON at all: a bug, which the full path reports
        checked = False
    if not checked:
        return _full(name, payload, ctx, manifest)
    return redact_payload({"ok": True, "result": data}, ctx)


def _full(name: str, payload: Any, ctx: Context, manifest: Manifest) -> dict[str, Any]:
    from butler_skill.host.dispatch import call_tool

    return call_tool(name, payload, ctx, manifest)


def error_exit_code(envelope: dict[str, Any]) -> int:
    if envelope.get("ok"):
        return 0
    return 2 if envelope["error"]["code"] in ("invalid_input", "not_found") else 1
