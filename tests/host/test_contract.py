"""One source of truth: schemas/ from the models, tool lists from skill.yaml, SKILL.md in step."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from butler_skill.config import ENV_VARS
from butler_skill.host import schemas
from butler_skill.host.manifest import load_manifest
from butler_skill.host.mcp_server import tool_list
from tests.conftest import REPO


def test_committed_schemas_match_the_models() -> None:
    assert schemas.check(load_manifest(from_yaml=True), REPO) == []
    assert load_manifest() == load_manifest(from_yaml=True)  # the compiled manifest is skill.yaml


def test_drift_is_detected(tmp_path) -> None:
    manifest = load_manifest()
    schemas.write(manifest, tmp_path)
    assert schemas.check(manifest, tmp_path) == []
    target = tmp_path / "schemas/get_status.input.json"
    target.write_text(target.read_text().replace('"history_limit"', '"history_limmit"'))
    (tmp_path / "schemas/stale.input.json").write_text("{}")
    assert schemas.check(manifest, tmp_path) == ["schemas/get_status.input.json", "schemas/stale.input.json"]


def test_skill_yaml_is_valid_against_its_schema() -> None:
    raw = yaml.safe_load((REPO / "skill.yaml").read_text())
    schema = json.loads((REPO / "schemas/skill.schema.json").read_text())
    jsonschema.validate(raw, schema)
    bad = {**raw, "tools": [{**raw["tools"][0], "handler": "no colon"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_packaged_manifest_is_the_top_level_one() -> None:
    manifest = load_manifest()
    assert (manifest.root / "skill.yaml").resolve() == (REPO / "skill.yaml").resolve()


def test_every_tool_resolves_and_mcp_lists_them_in_order() -> None:
    manifest = load_manifest()
    for tool in manifest.tools:
        assert callable(tool.function)
        assert tool.input_model.model_config.get("extra") == "forbid", tool.name
        schemas.mcp_tool_name("butler", tool.name)
    assert [t.name for t in tool_list(manifest)] == [t.name for t in manifest.tools]


def test_cli_call_choices_come_from_the_manifest() -> None:
    from butler_skill.host.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    call = sub.choices["call"]  # type: ignore[index]
    tool_arg = next(a for a in call._actions if a.dest == "tool")
    assert list(tool_arg.choices) == [t.name for t in load_manifest().tools]


def _skill_md() -> tuple[dict, str]:
    text = (REPO / "SKILL.md").read_text("utf-8")
    _, front, body = text.split("---", 2)
    return yaml.safe_load(front), body


def test_skill_md_frontmatter() -> None:
    front, _ = _skill_md()
    assert front["name"] == "butler"
    assert len(front["description"]) < 160 and "\n" not in front["description"]
    oc = front["metadata"]["openclaw"]
    assert oc["requires"]["bins"] == ["butler"]
    assert any(i["kind"] == "uv" and i["package"] == "butler-skill" for i in oc["install"])
    declared = {v["name"] for v in oc["envVars"]}
    from butler_skill.config import DEFAULT_KEYS
    from butler_skill.treasury.config import ENV_VARS as TREASURY_ENV_VARS

    assert set(ENV_VARS) | set(TREASURY_ENV_VARS) <= declared
    assert {k["key_env"] for k in DEFAULT_KEYS} <= declared  # every secret Butler may read is declared


def test_skill_md_tool_table_matches_manifest() -> None:
    _, body = _skill_md()
    listed = re.findall(r"^\| `butler__([a-z_]+)` \|", body, flags=re.M)
    assert listed == [t.name for t in load_manifest().tools]


def test_readme_environment_table_lists_every_variable_butler_reads() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("**Environment**"):readme.index("## How it works")]
    listed = set(re.findall(r"^\| `(BUTLER_[A-Z_]+)` \|", table, flags=re.M))
    assert set(ENV_VARS) <= listed, sorted(set(ENV_VARS) - listed)
