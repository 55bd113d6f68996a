"""`Butler`: the Python face of the same tools, with the original API's method names.

Each method takes its tool's input fields as keyword arguments, goes through the same validation as
the CLI and the MCP server, and returns the tool's output model. Failures raise ButlerError subclasses
carrying the same code, message and details the error shape would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from butler_skill import errors
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.manifest import load_manifest

_ERRORS: dict[str, type[errors.ButlerError]] = {
    cls.code: cls
    for cls in (errors.InvalidInput, errors.NoCapacity, errors.UnknownKey, errors.UnknownSession,
                errors.UnknownTask, errors.ProviderError, errors.PolicyDenied, errors.ApprovalRequired,
                errors.ConfigError, errors.Conflict, errors.InternalError)
}


class Butler:
    def __init__(self, keys_path: str | Path | None = None, state_path: str | Path | None = None,
                 context: Context | None = None) -> None:
        self.context = context or Context(
            keys_path=Path(keys_path) if keys_path else None,
            state_path=Path(state_path) if state_path else None,
        )
        self._manifest = load_manifest()

    def call(self, tool: str, **fields: Any) -> BaseModel:
        spec = self._manifest.tool(tool)
        if spec is None:
            raise errors.InvalidInput(f"unknown tool {tool!r}")
        payload = {k: v for k, v in fields.items() if v is not None}
        envelope = call_tool(tool, payload, self.context, self._manifest)
        if not envelope["ok"]:
            err = envelope["error"]
            raise _ERRORS.get(err["code"], errors.InternalError)(err["message"], **err["details"])
        return spec.output_model.model_validate(envelope["result"])

    def secret_for(self, key_id: str) -> str | None:
        """The key material of `key_id`, for code that calls the provider itself. Never log it."""
        return self.context.config.secret_for(key_id)

    def close(self) -> None:
        self.context.close()

    def __enter__(self) -> Butler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # One method per tool of skill.yaml: allocate_tokens(...), get_status(), ...
        if name.startswith("_") or self.__dict__.get("_manifest") is None or self._manifest.tool(name) is None:
            raise AttributeError(name)
        return lambda **fields: self.call(name, **fields)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {t.name for t in self._manifest.tools})
