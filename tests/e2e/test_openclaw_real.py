"""Butler inside a REAL OpenClaw: the MCP server registered and probed, SKILL.md found and judged eligible.

Opt-in (marker `openclaw`): skipped unless BUTLER_TEST_OPENCLAW=1, an `openclaw` binary is found (in
$BUTLER_OPENCLAW_PREFIX/node_modules/.bin, else on PATH) and the Node it runs under is >= 24.16. Set up
an OpenClaw without root (about 800 MB) and run these tests with:

    scripts/install_openclaw.sh /path/to/prefix
    BUTLER_TEST_OPENCLAW=1 BUTLER_OPENCLAW_PREFIX=/path/to/prefix .venv/bin/python -m pytest -m openclaw tests/e2e

Every OpenClaw command runs with HOME set to a scratch folder (its config and skills land there, never in
yours) and the OpenClaw bin folder first on PATH (so its own Node is the one used).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from butler_skill.config import DEMO_KEYS, write_keys_file
from butler_skill.host.manifest import load_manifest
from tests.conftest import REPO

pytestmark = [pytest.mark.openclaw, pytest.mark.slow]

MIN_NODE = (24, 16)
VENV_BIN = Path(sys.executable).parent
TIMEOUT_S = 300  # OpenClaw's cold start alone takes seconds; generous so a slow machine does not flake


@dataclass(frozen=True)
class OpenClaw:
    exe: Path
    bin_dir: Path
    base_path: list[str]  # PATH folders without any `butler`, the OpenClaw bin folder first
    node_version: str

    def env(self, home: Path, *, butler_on_path: bool) -> dict[str, str]:
        path = [str(self.bin_dir), *(p for p in self.base_path if p != str(self.bin_dir))]
        if butler_on_path:
            path.insert(1, str(VENV_BIN))
        # The caller's OpenClaw and Butler settings must not leak in: the scratch HOME is the whole world.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "BUTLER_"))}
        return {**env, "HOME": str(home), "PATH": os.pathsep.join(path)}

    def run(self, home: Path, *args: str, butler_on_path: bool = True, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.exe), *args], cwd=home, env=self.env(home, butler_on_path=butler_on_path),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        if check:
            assert proc.returncode == 0, f"openclaw {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n" \
                                         f"{proc.stderr}"
        return proc

    def json(self, home: Path, *args: str, butler_on_path: bool = True) -> dict[str, Any]:
        out = self.run(home, *args, "--json", butler_on_path=butler_on_path).stdout
        start = out.find("{")  # a banner line may come first
        assert start >= 0, f"openclaw {' '.join(args)} --json printed no JSON:\n{out}"
        data, _ = json.JSONDecoder().raw_decode(out[start:])
        return dict(data)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def find_openclaw() -> OpenClaw | str:
    """The OpenClaw to test, or why there is none."""
    if os.environ.get("BUTLER_TEST_OPENCLAW") != "1":
        return ("opt-in: set BUTLER_TEST_OPENCLAW=1 (and BUTLER_OPENCLAW_PREFIX to a folder made by "
                "scripts/install_openclaw.sh) to test against a real OpenClaw")
    candidates: list[Path] = []
    prefix = os.environ.get("BUTLER_OPENCLAW_PREFIX")
    if prefix:
        candidates.append(Path(prefix).expanduser() / "node_modules" / ".bin" / "openclaw")
    on_path = shutil.which("openclaw")
    if on_path:
        candidates.append(Path(on_path))
    exe = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    if exe is None:
        where = f"{prefix}/node_modules/.bin" if prefix else "(BUTLER_OPENCLAW_PREFIX unset)"
        return f"no openclaw binary in {where} nor on PATH; run scripts/install_openclaw.sh DIR"
    bin_dir = exe.parent
    # Folders that hold a `butler` are left out so that whether OpenClaw sees Butler is up to each test.
    base = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and p != str(VENV_BIN) and not (Path(p) / "butler").exists()]
    if (bin_dir / "butler").exists():
        return f"{bin_dir} holds a `butler` too: cannot test eligibility without Butler on PATH"
    path = os.pathsep.join([str(bin_dir), *base])
    node = shutil.which("node", path=path)
    if node is None:
        return f"no node next to {exe} nor on PATH"
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if _version(node_version) < MIN_NODE:
        return f"OpenClaw needs Node >= {'.'.join(map(str, MIN_NODE))}; {node} is {node_version or 'unknown'}"
    return OpenClaw(exe=exe, bin_dir=bin_dir, base_path=base, node_version=node_version)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    # What `butler init` would do, with the demo keys: the server then starts on a real config.
    write_keys_file(folder / ".openclaw" / "workspace" / "api-keys.json", DEMO_KEYS)
    return folder


def _console_script(name: str) -> str:
    exe = shutil.which(name, path=str(VENV_BIN))
    assert exe, f"{name} is not installed next to {sys.executable}"
    return exe


def test_openclaw_runs_on_a_recent_node(openclaw: OpenClaw, home: Path) -> None:
    assert _version(openclaw.node_version) >= MIN_NODE
    assert "OpenClaw" in openclaw.run(home, "--version").stdout


def test_mcp_add_then_probe_lists_every_tool(openclaw: OpenClaw, home: Path) -> None:
    server = _console_script("butler-mcp")
    openclaw.run(home, "mcp", "add", "butler", "--command", server)
    config = json.loads((home / ".openclaw" / "openclaw.json").read_text("utf-8"))
    assert config["mcp"]["servers"]["butler"]["command"] == server

    probe = openclaw.json(home, "mcp", "probe", "butler")
    expected = {f"butler__{t.name}" for t in load_manifest().tools}
    assert isinstance(probe["tools"], list)
    assert set(probe["tools"]) == expected and len(probe["tools"]) == len(expected)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) for name in probe["tools"])
    assert probe["servers"]["butler"]["tools"] == len(expected)
    assert not probe.get("diagnostics"), probe.get("diagnostics")


def _frontmatter(skill_md: Path) -> dict[str, Any]:
    _, head, _ = skill_md.read_text("utf-8").split("---", 2)
    return dict(yaml.safe_load(head))


@pytest.mark.parametrize("location", ["managed", "workspace"])
def test_skill_is_found_and_eligible_only_with_butler_on_path(openclaw: OpenClaw, home: Path, location: str
                                                              ) -> None:
    # Ask OpenClaw where it reads skills from rather than guessing: the managed folder (~/.openclaw/skills)
    # and the agent workspace's skills/ folder.
    listing = openclaw.json(home, "skills", "list")
    assert "butler" not in {s["name"] for s in listing["skills"]}
    folder = Path(listing["managedSkillsDir"]) if location == "managed" else Path(listing["workspaceDir"]) / "skills"
    assert folder.is_relative_to(home), f"OpenClaw reads skills outside the scratch HOME: {folder}"
    skill_md = folder / "butler" / "SKILL.md"
    skill_md.parent.mkdir(parents=True)
    shutil.copyfile(REPO / "SKILL.md", skill_md)
    front = _frontmatter(REPO / "SKILL.md")

    without = openclaw.json(home, "skills", "info", "butler", butler_on_path=False)
    assert without["name"] == "butler" and Path(without["filePath"]) == skill_md
    assert without["requirements"]["bins"] == ["butler"]
    assert without["eligible"] is False and without["missing"]["bins"] == ["butler"]

    with_butler = openclaw.json(home, "skills", "info", "butler", butler_on_path=True)
    assert with_butler["eligible"] is True, with_butler["missing"]
    assert with_butler["missing"]["bins"] == []
    assert with_butler["source"] == f"openclaw-{location}"
    assert with_butler["description"] == front["description"]
    assert with_butler["emoji"] == front["metadata"]["openclaw"]["emoji"]
    assert with_butler["userInvocable"] is True
    assert [i["kind"] for i in with_butler["install"]] == ["uv"]


def test_bundle_installs_skill_and_mcp_server_in_one_step(openclaw: OpenClaw, home: Path) -> None:
    # `openclaw plugins install DIR` on the generated bundle folder: a Claude-format bundle with the skill and
    # the MCP server. `mcp probe` only knows mcp.servers, so the server is checked through `plugins inspect`.
    openclaw.run(home, "plugins", "install", str(REPO / "openclaw-bundle"), "--force", "--accept-capabilities")
    inspect = openclaw.json(home, "plugins", "inspect", "butler")
    plugin = inspect["plugin"]
    assert (plugin["format"], plugin["bundleFormat"], plugin["status"]) == ("bundle", "claude", "loaded")
    assert plugin["enabled"] is True and plugin["version"] == load_manifest().version
    assert sorted(plugin["bundleCapabilities"]) == ["mcpServers", "skills"]
    assert inspect["mcpServers"] == [{"name": "butler", "hasStdioTransport": True}]

    skill = openclaw.json(home, "skills", "info", "butler", butler_on_path=True)
    assert skill["eligible"] is True and Path(skill["filePath"]).read_text("utf-8") == (REPO / "SKILL.md").read_text(
        "utf-8")
    probe = openclaw.run(home, "mcp", "probe", "butler", "--json", check=False)
    assert "No MCP server named" in probe.stdout + probe.stderr  # what the README warns about
