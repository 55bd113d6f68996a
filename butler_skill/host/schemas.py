"""Generate schemas/ from the code: each tool's input and output model, and skill.yaml's own schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from butler_skill.host.bundle import bundle_files
from butler_skill.host.manifest import COMPILED, Manifest, read_skill_yaml
from butler_skill.models import KeyConfig

KEYS_SCHEMA = "schemas/keys.schema.json"
TOOL_NAME = r"^[a-z][a-z0-9_]{0,47}$"  # butler__<name> must stay within MCP hosts' 64 characters


class ToolEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOL_NAME)
    description: str = Field(min_length=10, max_length=1024)
    handler: str = Field(pattern=r"^[a-z_][a-z0-9_.]*:[a-z_][a-z0-9_]*$")
    input_schema: str = Field(pattern=r"^schemas/[a-z0-9_]+\.input\.json$")
    output_schema: str = Field(pattern=r"^schemas/[a-z0-9_]+\.output\.json$")
    mutates: bool
    spends_money: bool


class SkillManifest(BaseModel):
    """The shape of skill.yaml."""

    model_config = ConfigDict(extra="forbid", title="Butler skill manifest")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+")
    description: str
    tools: list[ToolEntry] = Field(min_length=1)


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def expected_files(manifest: Manifest) -> dict[str, str]:
    files: dict[str, str] = {
        "schemas/skill.schema.json": _dump(SkillManifest.model_json_schema()),
        COMPILED: _dump(SkillManifest.model_validate(read_skill_yaml(manifest.root)).model_dump()),
        # One key of the keys file, from models.KeyConfig: keybook's pydantic-free reader checks entries with it.
        KEYS_SCHEMA: _dump(KeyConfig.model_json_schema()),
    }
    for tool in manifest.tools:
        inp = tool.input_model.model_json_schema(mode="validation")
        out = tool.output_model.model_json_schema(mode="serialization", by_alias=True)
        for schema, rel, kind in ((inp, tool.input_schema, "input"), (out, tool.output_schema, "output")):
            schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                      "$id": f"butler:{tool.name}.{kind}", **schema}
            files[rel] = _dump(schema)
    return files


TOOLS_BEGIN = "<!-- tools:begin (generated from skill.yaml by `butler schemas --write`) -->"
TOOLS_END = "<!-- tools:end -->"


def skill_md_table(manifest: Manifest) -> str:
    rows = ["| tool | what it does | changes state | moves money |", "|---|---|---|---|"]
    for t in manifest.tools:
        first = t.description.split(". ")[0].rstrip(".")
        rows.append(f"| `{manifest.name}__{t.name}` | {first}. | {'yes' if t.mutates else 'no'} | "
                    f"{'yes: ask your person' if t.spends_money else 'no'} |")
    return "\n".join(rows)


def render_skill_md(manifest: Manifest, text: str) -> str:
    head, _, rest = text.partition(TOOLS_BEGIN)
    _, _, tail = rest.partition(TOOLS_END)
    if not rest:
        raise ValueError("SKILL.md lacks the tools markers")
    return f"{head}{TOOLS_BEGIN}\n{skill_md_table(manifest)}\n{TOOLS_END}{tail}"


def check(manifest: Manifest, root: Path) -> list[str]:
    """Paths whose committed content differs from what the code generates (empty when in step)."""
    drift = []
    for rel, content in expected_files(manifest).items():
        path = root / rel
        if not path.exists() or path.read_text("utf-8") != content:
            drift.append(rel)
    skill_md = root / "SKILL.md"
    if skill_md.exists() and render_skill_md(manifest, skill_md.read_text("utf-8")) != skill_md.read_text("utf-8"):
        drift.append("SKILL.md")
    for rel, content in _bundle(manifest, root).items():
        if not (root / rel).exists() or (root / rel).read_text("utf-8") != content:
            drift.append(rel)
    known = set(expected_files(manifest))
    for stray in sorted((root / "schemas").glob("*.json")):
        rel = f"schemas/{stray.name}"
        if rel not in known:
            drift.append(rel)
    return drift


def write(manifest: Manifest, root: Path) -> list[str]:
    written = []
    (root / "schemas").mkdir(exist_ok=True)
    for rel, content in expected_files(manifest).items():
        path = root / rel
        if not path.exists() or path.read_text("utf-8") != content:
            path.write_text(content, "utf-8")
            written.append(rel)
    skill_md = root / "SKILL.md"
    if skill_md.exists():
        old = skill_md.read_text("utf-8")
        new = render_skill_md(manifest, old)
        if new != old:
            skill_md.write_text(new, "utf-8")
            written.append("SKILL.md")
    for rel, content in _bundle(manifest, root).items():
        path = root / rel
        if not path.exists() or path.read_text("utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, "utf-8")
            written.append(rel)
    for stray in (root / "schemas").glob("*.json"):
        if f"schemas/{stray.name}" not in expected_files(manifest):
            stray.unlink()
            written.append(f"schemas/{stray.name} (removed)")
    return written


def _bundle(manifest: Manifest, root: Path) -> dict[str, str]:
    """The OpenClaw bundle folder's files, its SKILL.md being the skill's own (with the generated tool table)."""
    skill_md = root / "SKILL.md"
    if not skill_md.exists():
        return {}
    return bundle_files(manifest, render_skill_md(manifest, skill_md.read_text("utf-8")))


def mcp_tool_name(server: str, tool: str) -> str:
    name = f"{server}__{tool}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"{name} is not a valid MCP host tool name")
    return name
