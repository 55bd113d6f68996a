"""Butler as an OpenClaw bundle plugin: one folder that `openclaw plugins install DIR` takes in one step.

The folder is a Claude-format bundle (OpenClaw detects `.claude-plugin/plugin.json`; docs.openclaw.ai,
"Plugin bundles"): the manifest names the plugin, `skills/butler/SKILL.md` is the skill the model reads and
`.mcp.json` starts the `butler-mcp` stdio server, whose tools OpenClaw exposes as `butler__<tool>`. Every file
is generated from skill.yaml and SKILL.md by `butler schemas --write` and checked by `--check`, so the bundle
cannot drift from the skill.
"""

from __future__ import annotations

import json

from butler_skill.host.manifest import Manifest

BUNDLE_DIR = "openclaw-bundle"
MCP_COMMAND = "butler-mcp"  # the installed console script; OpenClaw forbids PYTHONPATH-style env on MCP servers


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def bundle_files(manifest: Manifest, skill_md: str) -> dict[str, str]:
    """Relative path -> content of every file in the bundle folder."""
    plugin = {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "homepage": "https://github.com/butler-skill/butler",
        "license": "MIT",
    }
    mcp = {"mcpServers": {manifest.name: {"command": MCP_COMMAND, "args": []}}}
    return {
        f"{BUNDLE_DIR}/.claude-plugin/plugin.json": _json(plugin),
        f"{BUNDLE_DIR}/.mcp.json": _json(mcp),
        f"{BUNDLE_DIR}/skills/{manifest.name}/SKILL.md": skill_md,
    }
