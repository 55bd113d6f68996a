"""`butler scan` on the command line: formats, exit codes, baselines, and the pre-commit hook."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from butler_skill.host.cli_scan import main
from tests.scan.conftest import Git
from tests.scan.shapes import make_key

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def leaky(tmp_path: Path) -> tuple[Path, str]:
    k = make_key("nvidia-api-key", random.Random(11))
    (tmp_path / "app.env").write_text(f"NVIDIA_API_KEY={k}\n")
    (tmp_path / "ok.txt").write_text("nothing here\n")
    return tmp_path, k


def test_text_exit_1_and_no_secret(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, k = leaky
    code, out, err = run([], d, capsys, monkeypatch)
    assert code == 1
    assert out.startswith("app.env:1:16: nvidia-api-key nvapi-…(70 chars)")
    assert k not in out + err and k[6:30] not in out + err


def test_clean_exit_0(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, _ = leaky
    code, out, _ = run(["ok.txt"], d, capsys, monkeypatch)
    assert code == 0 and out == "butler scan: no secrets found (1 file scanned)\n"


def test_bad_usage_exit_2(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, _ = leaky
    assert run(["missing.txt"], d, capsys, monkeypatch)[0] == 2
    assert run(["--format", "xml"], d, capsys, monkeypatch)[0] == 2
    assert run(["--staged", "--since", "HEAD"], d, capsys, monkeypatch)[0] == 2
    assert run(["--max-bytes", "0"], d, capsys, monkeypatch)[0] == 2
    code, _, err = run(["--baseline", "nope.json"], d, capsys, monkeypatch)
    assert code == 2 and "not_found" in err


def test_json_and_sarif_formats(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, k = leaky
    code, out, _ = run(["--format", "json"], d, capsys, monkeypatch)
    doc = json.loads(out)
    assert code == 1 and doc["clean"] is False and doc["files_scanned"] == 2
    assert [f["rule_id"] for f in doc["findings"]] == ["nvidia-api-key"]
    code, out, _ = run(["--format", "sarif", "--output", "report.sarif"], d, capsys, monkeypatch)
    assert code == 1 and out == ""
    sarif = json.loads((d / "report.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "nvidia-api-key"
    assert k not in (d / "report.sarif").read_text()


def test_write_baseline_then_pass(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, k = leaky
    code, _, err = run(["--write-baseline", ".butler-baseline.json"], d, capsys, monkeypatch)
    assert code == 0 and "wrote 1" in err
    assert k not in (d / ".butler-baseline.json").read_text()
    assert run(["--baseline", ".butler-baseline.json"], d, capsys, monkeypatch)[0] == 0
    # a new key still fails the gate
    (d / "new.env").write_text(f"K={make_key('groq-api-key', random.Random(12))}\n")
    assert run(["--baseline", ".butler-baseline.json"], d, capsys, monkeypatch)[0] == 1


def test_inline_allow(leaky: tuple[Path, str], capsys, monkeypatch) -> None:
    d, _ = leaky
    text = (d / "app.env").read_text().rstrip("\n")
    (d / "app.env").write_text(text + "  # butler:allow (sandbox key)\n")
    code, out, _ = run([], d, capsys, monkeypatch)
    assert code == 0 and "suppressed: inline 1" in out


def test_module_runs_standalone(leaky: tuple[Path, str]) -> None:
    d, _ = leaky
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "butler_skill.host.cli_scan", "--format", "json"],
                          cwd=d, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["findings"][0]["rule_id"] == "nvidia-api-key"


# ---- the pre-commit hook ----------------------------------------------------------------------------------


def test_pre_commit_manifest() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "butler-scan"]
    assert hook["language"] == "python" and hook["entry"] == "butler scan"
    assert hook["pass_filenames"] is True
    assert set(hook["stages"]) == {"pre-commit", "pre-push"}


def _staged_files(git: Git) -> list[str]:
    return [p for p in git("diff", "--cached", "--name-only", "--diff-filter=ACMR").split("\n") if p]


def test_hook_simulation_blocks_a_staged_key(git_repo: tuple[Path, Git], capsys, monkeypatch) -> None:
    """What pre-commit does: run the entry on the staged file names. A key blocks; a clean change passes."""
    repo, git = git_repo
    (repo / "README.md").write_text("# demo\n")
    git("add", ".")
    git("commit", "-qm", "init")
    (repo / "settings.py").write_text(f'GITHUB_TOKEN = "{make_key("github-fine-grained-pat", random.Random(1))}"\n')
    git("add", "settings.py")
    code, out, _ = run(_staged_files(git), repo, capsys, monkeypatch)
    assert code == 1 and "settings.py:1:17: github-fine-grained-pat" in out
    assert run(["--staged"], repo, capsys, monkeypatch)[0] == 1
    # the author removes the key: the same hook now passes
    (repo / "settings.py").write_text('GITHUB_TOKEN = os.environ["GITHUB_TOKEN"]\n')
    git("add", "settings.py")
    code, out, _ = run(_staged_files(git), repo, capsys, monkeypatch)
    assert code == 0 and "no secrets found" in out
    assert run(["--staged"], repo, capsys, monkeypatch)[0] == 0


@pytest.mark.slow
def test_real_pre_commit_blocks_the_commit(git_repo: tuple[Path, Git]) -> None:
    """Opt-in by presence: with the `pre-commit` tool installed, a real `git commit` is refused.

    The hook is declared as in .pre-commit-hooks.yaml but with `language: system` and this interpreter as the
    entry, so nothing is installed from the network; pre-commit's own file selection, staging and exit-code
    handling are the real thing.
    """
    exe = shutil.which("pre-commit") or str(Path(sys.executable).with_name("pre-commit"))
    if not Path(exe).exists():
        pytest.skip("pre-commit is not installed (pip install pre-commit to run this test)")
    repo, git = git_repo
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    local = {**hook, "language": "system", "entry": f"{sys.executable} -m butler_skill.host.cli_scan"}
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PRE_COMMIT_HOME": str(repo.parent / "pc-home")}
    subprocess.run([exe, "install"], cwd=repo, env=env, check=True, capture_output=True)
    git("add", ".pre-commit-config.yaml")
    git("commit", "-qm", "hooks")
    (repo / "deploy.env").write_text(f"GROQ_API_KEY={make_key('groq-api-key', random.Random(2))}\n")
    git("add", "deploy.env")
    blocked = subprocess.run(["git", "commit", "-qm", "leak"], cwd=repo, env=env, capture_output=True, text=True,
                             check=False)
    assert blocked.returncode != 0 and "groq-api-key" in blocked.stdout + blocked.stderr
    (repo / "deploy.env").write_text("GROQ_API_KEY=${GROQ_API_KEY}\n")
    git("add", "deploy.env")
    passed = subprocess.run(["git", "commit", "-qm", "clean"], cwd=repo, env=env, capture_output=True, text=True,
                            check=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
