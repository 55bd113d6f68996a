"""The OpenClaw bundle folder: generated from skill.yaml and SKILL.md, checked for drift, and findable tools."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

from butler_skill.host import schemas
from butler_skill.host.bundle import BUNDLE_DIR
from butler_skill.host.manifest import load_manifest
from tests.conftest import REPO


def test_committed_bundle_is_the_skill_and_its_mcp_server() -> None:
    manifest = load_manifest()
    bundle = REPO / BUNDLE_DIR
    plugin = json.loads((bundle / ".claude-plugin" / "plugin.json").read_text("utf-8"))
    assert (plugin["name"], plugin["version"]) == (manifest.name, manifest.version)
    servers = json.loads((bundle / ".mcp.json").read_text("utf-8"))["mcpServers"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert list(servers) == ["butler"] and servers["butler"]["command"] in scripts
    assert (bundle / "skills" / "butler" / "SKILL.md").read_text("utf-8") == (REPO / "SKILL.md").read_text("utf-8")


def test_an_edit_to_skill_md_shows_as_bundle_drift_until_written(tmp_path: Path) -> None:
    manifest = load_manifest()
    root = tmp_path / "repo"
    shutil.copytree(REPO / "schemas", root / "schemas")
    shutil.copytree(REPO / BUNDLE_DIR, root / BUNDLE_DIR)
    shutil.copyfile(REPO / "SKILL.md", root / "SKILL.md")
    assert schemas.check(manifest, root) == []
    with (root / "SKILL.md").open("a", encoding="utf-8") as f:
        f.write("\nOne more line.\n")
    assert schemas.check(manifest, root) == [f"{BUNDLE_DIR}/skills/butler/SKILL.md"]
    assert f"{BUNDLE_DIR}/skills/butler/SKILL.md" in schemas.write(manifest, root)
    assert schemas.check(manifest, root) == []


def test_token_tools_are_findable_by_budget_token_key_and_spending() -> None:
    # OpenClaw's tool_search matches descriptions: each question word must reach the token tools.
    tools = {t.name: t.description.lower() for t in load_manifest().tools}
    for name in ("allocate_tokens", "get_available_keys", "monitor_usage", "get_status", "record_usage"):
        for word in ("butler", "budget", "token", "key"):
            assert word in tools[name], (name, word)
    for name in ("allocate_tokens", "monitor_usage", "get_status", "record_usage"):
        assert "spend" in tools[name], name
