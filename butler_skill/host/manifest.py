"""skill.yaml: the one list of tools. The CLI, the MCP server and the Python facade all read it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


PACKAGE_DIR = Path(__file__).resolve().parent.parent
# The manifest and schemas ship inside the package (butler_skill/manifest links to the top-level copies).
MANIFEST_DIR = PACKAGE_DIR / "manifest"


class ToolSpec:
    """One tool of skill.yaml. (A plain class, not a dataclass: a cold `butler call` imports neither dataclasses nor
    inspect for it.)"""

    def __init__(self, *, name: str, description: str, handler: str, input_schema: str, output_schema: str,
                 mutates: bool, spends_money: bool) -> None:
        self.name = name
        self.description = description
        self.handler = handler
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.mutates = mutates
        self.spends_money = spends_money

    def _fields(self) -> tuple[Any, ...]:
        return (self.name, self.description, self.handler, self.input_schema, self.output_schema, self.mutates,
                self.spends_money)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolSpec) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"ToolSpec(name={self.name!r}, handler={self.handler!r})"

    @cached_property
    def function(self) -> Callable[..., Any]:
        module_name, _, attr = self.handler.partition(":")
        func: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
        return func

    @cached_property
    def models(self) -> tuple[type[BaseModel], type[BaseModel]]:
        """Input and output models, read from the handler's type hints: `(ctx, inp: In) -> Out`."""
        import inspect
        import typing

        from butler_skill.host.context import Context

        hints = typing.get_type_hints(self.function, localns={"Context": Context})
        params = [p for p in inspect.signature(self.function).parameters if p != "ctx"]
        if len(params) != 1:
            raise TypeError(f"handler {self.handler} must take (ctx, inp)")
        return hints[params[0]], hints["return"]

    @property
    def input_model(self) -> type[BaseModel]:
        return self.models[0]

    @property
    def output_model(self) -> type[BaseModel]:
        return self.models[1]

    @property
    def is_async(self) -> bool:
        import inspect

        return inspect.iscoroutinefunction(self.function)


class Manifest:
    def __init__(self, *, name: str, version: str, description: str, tools: tuple[ToolSpec, ...], root: Path) -> None:
        self.name = name
        self.version = version
        self.description = description
        self.tools = tools
        self.root = root

    def _fields(self) -> tuple[Any, ...]:
        return (self.name, self.version, self.description, self.tools, self.root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Manifest(name={self.name!r}, version={self.version!r}, tools={len(self.tools)}, root={self.root!r})"

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def schema_path(self, relative: str) -> Path:
        return self.root / relative


def manifest_root() -> Path:
    return MANIFEST_DIR


COMPILED = "schemas/skill.manifest.json"


def read_skill_yaml(base: Path) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.load((base / "skill.yaml").read_text("utf-8"),
                                     Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data


@cache
def load_manifest(root: Path | None = None, *, from_yaml: bool = False) -> Manifest:
    """skill.yaml, read through its JSON compilation (kept in step by `butler schemas`): a cold start
    then needs no YAML parser. `from_yaml` reads the source itself (what `butler schemas` compiles)."""
    base = root or manifest_root()
    compiled = base / COMPILED
    use_json = compiled.exists() and not from_yaml
    raw = json.loads(compiled.read_text("utf-8")) if use_json else read_skill_yaml(base)
    tools = tuple(
        ToolSpec(
            name=t["name"], description=t["description"].strip(), handler=t["handler"],
            input_schema=t["input_schema"], output_schema=t["output_schema"],
            mutates=bool(t.get("mutates", False)), spends_money=bool(t.get("spends_money", False)),
        )
        for t in raw["tools"]
    )
    return Manifest(name=raw["name"], version=str(raw["version"]), description=raw["description"].strip(),
                    tools=tools, root=base)
