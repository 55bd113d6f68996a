"""Sources: files and directories, the git index (--staged) and history (--since), through the handler."""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from butler_skill.errors import InvalidInput, NotFound
from butler_skill.handlers.scan import ScanSecretsInput, ScanSecretsOutput, scan_secrets
from tests.scan.conftest import Git
from tests.scan.shapes import make_key, pem


def key(rule: str, tag: str) -> str:
    return make_key(rule, random.Random(tag))


def scan(cwd: Path, **kw: object) -> ScanSecretsOutput:
    return scan_secrets(SimpleNamespace(cwd=cwd), ScanSecretsInput(**kw))  # type: ignore[arg-type]


def where(out: ScanSecretsOutput) -> list[tuple[str, int, str]]:
    return [(f.path, f.line, f.rule_id) for f in out.findings]


# ---- files ------------------------------------------------------------------------------------------------


def test_directory_walk_skips_and_counts(tmp_path: Path) -> None:
    k = key("groq-api-key", "walk")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(f'KEY = "{k}"\n')
    (tmp_path / "src" / "clean.py").write_text("print('hi')\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(f"token = {k}\n")
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "pkg" / "index.js").write_text(f"const k = '{k}';\n")
    (tmp_path / "blob.dat").write_bytes(b"\0\1\2" + k.encode())
    (tmp_path / "logo.png").write_bytes(k.encode())
    (tmp_path / "huge.txt").write_text("x" * 5000 + k)
    os.symlink(tmp_path / "src" / "app.py", tmp_path / "link.py")
    out = scan(tmp_path, max_file_bytes=4096)
    assert where(out) == [("src/app.py", 1, "groq-api-key")]
    assert out.files_scanned == 2 and out.clean is False and out.mode == "files"
    assert out.files_skipped == {"binary": 2, "excluded_dir": 2, "symlink": 1, "too_large": 1}


def test_named_files_and_absolute_paths(tmp_path: Path) -> None:
    k = key("github-token", "named")
    (tmp_path / "a.env").write_text(f"GH={k}\n")
    (tmp_path / "b.env").write_text("GH=\n")
    out = scan(tmp_path, paths=["a.env", str(tmp_path / "b.env")])
    assert where(out) == [("a.env", 1, "github-token")] and out.files_scanned == 2
    with pytest.raises(NotFound, match="no such file"):
        scan(tmp_path, paths=["missing.txt"])


def test_utf8_and_crlf(tmp_path: Path) -> None:
    k = key("openrouter-api-key", "crlf")
    (tmp_path / "a.env").write_bytes(f"# café ☕\r\nOR={k}\r\n".encode())
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\nOR=" + k.encode() + b"\n")
    out = scan(tmp_path)
    assert where(out) == [("a.env", 2, "openrouter-api-key"), ("latin1.txt", 2, "openrouter-api-key")]


def test_input_model_is_strict() -> None:
    with pytest.raises(ValueError):
        ScanSecretsInput(paths=["."], recursive=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ScanSecretsInput(since="")
    schema = ScanSecretsInput.model_json_schema()
    assert schema["additionalProperties"] is False
    assert all("description" in p for p in schema["properties"].values())


def test_staged_and_since_together_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="either staged or since"):
        scan(tmp_path, staged=True, since="HEAD")


# ---- staged -----------------------------------------------------------------------------------------------


def test_staged_scans_only_added_lines_in_the_index(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    old, new, unstaged = key("groq-api-key", "old"), key("github-token", "new"), key("nvidia-api-key", "uns")
    (repo / "config.env").write_text(f"OLD={old}\nA=1\n")
    git("add", ".")
    git("commit", "-qm", "base")
    (repo / "config.env").write_text(f"OLD={old}\nA=1\nNEW={new}\n")
    git("add", "config.env")
    (repo / "config.env").write_text(f"OLD={old}\nA=1\nNEW={new}\nUNSTAGED={unstaged}\n")
    out = scan(repo, staged=True)
    assert where(out) == [("config.env", 3, "github-token")]
    assert out.mode == "staged" and out.files_scanned == 1


def test_staged_new_files_binary_deleted_renamed(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    k1, k2 = key("stripe-secret-key", "k1"), key("anthropic-api-key", "k2")
    (repo / "keep.py").write_text(f'K = "{k1}"\n')
    (repo / "gone.py").write_text(f'K = "{k1}"\n')
    git("add", ".")
    git("commit", "-qm", "base")
    git("mv", "keep.py", "renamed.py")  # a pure rename adds no line
    git("rm", "-q", "gone.py")
    (repo / "dir with space").mkdir()
    (repo / "dir with space" / "né.yaml").write_text(f"anthropic:\n  key: {k2}\n")
    (repo / "data.bin").write_bytes(b"\0\0" + k2.encode())
    git("add", ".")
    out = scan(repo, staged=True)
    assert where(out) == [("dir with space/né.yaml", 2, "anthropic-api-key")]
    assert out.files_skipped.get("binary") == 1


def test_staged_before_the_first_commit_and_private_keys(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    block = pem(random.Random(5))
    (repo / "id_rsa").write_text(block + "\n")
    git("add", ".")
    out = scan(repo, staged=True)
    assert where(out) == [("id_rsa", 1, "private-key")]
    assert out.findings[0].end_line == block.count("\n") + 1


def test_staged_with_pathspec(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    (repo / "a.env").write_text(f"K={key('groq-api-key', 'a')}\n")
    (repo / "b.env").write_text(f"K={key('groq-api-key', 'b')}\n")
    git("add", ".")
    assert [p for p, _, _ in where(scan(repo, staged=True, paths=["b.env"]))] == ["b.env"]


def test_staged_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(NotFound, match="not inside a git repository"):
        scan(tmp_path, staged=True)


# ---- since ------------------------------------------------------------------------------------------------


def test_since_scans_lines_added_in_the_range(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    early, x, y = key("groq-api-key", "early"), key("github-token", "x"), key("aws-access-key-id", "y")
    (repo / "a.env").write_text(f"EARLY={early}\n")
    git("add", ".")
    git("commit", "-qm", "c1")
    base = git("rev-parse", "HEAD").strip()
    (repo / "a.env").write_text(f"EARLY={early}\nX={x}\n")
    git("commit", "-qam", "c2")
    c2 = git("rev-parse", "HEAD").strip()
    (repo / "a.env").write_text(f"EARLY={early}\n")  # the leak is removed again: history still has it
    (repo / "b.py").write_text(f"\n\nAWS = '{y}'\n")
    git("add", ".")
    git("commit", "-qm", "c3")
    c3 = git("rev-parse", "HEAD").strip()
    out = scan(repo, since=base)
    assert sorted((f.commit, f.path, f.line, f.rule_id) for f in out.findings) == sorted(
        [(c2, "a.env", 2, "github-token"), (c3, "b.py", 3, "aws-access-key-id")]
    )
    assert out.mode == "history"
    assert scan(repo, since="HEAD").findings == []


def test_since_private_key_in_a_hunk(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    (repo / "README").write_text("hello\n")
    git("add", ".")
    git("commit", "-qm", "c1")
    (repo / "README").write_text("hello\n\n" + pem(random.Random(8)) + "\n")
    git("commit", "-qam", "c2")
    out = scan(repo, since="HEAD~1")
    assert where(out) == [("README", 3, "private-key")]


@pytest.mark.parametrize("rev", ["no-such-branch", "--output=/tmp/x", "HEAD~99"])
def test_since_bad_revision(git_repo: tuple[Path, Git], rev: str) -> None:
    repo, git = git_repo
    (repo / "f").write_text("x\n")
    git("add", ".")
    git("commit", "-qm", "c1")
    # An option-like rev is refused as input (the schema's pattern says so too); a missing one is not_found.
    with pytest.raises(ValueError if rev.startswith("-") else NotFound):
        scan(repo, since=rev)


def test_baseline_file_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        scan(tmp_path, baseline="bad.json")
    with pytest.raises(NotFound, match="no such file"):
        scan(tmp_path, baseline="nope.json")


# ---- encodings, virtualenvs, paths a caller names -------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_utf16_and_utf32_env_files_are_decoded_not_skipped(tmp_path: Path, encoding: str) -> None:
    k = key("groq-api-key", f"enc:{encoding}")
    (tmp_path / ".env").write_bytes(f"# written by a Windows tool\r\nGROQ_API_KEY={k}\r\n".encode(encoding))
    out = scan(tmp_path)
    assert where(out) == [(".env", 2, "groq-api-key")]
    assert out.files_skipped.get("binary", 0) == 0


def test_real_binary_with_nul_bytes_is_still_skipped(tmp_path: Path) -> None:
    k = key("groq-api-key", "bin")
    (tmp_path / "blob.dat").write_bytes(b"\x00\x01\x02\xff" * 50 + k.encode() + b"\x00\x13")
    out = scan(tmp_path)
    assert out.findings == [] and out.files_skipped["binary"] == 1


def test_staged_utf16_file_is_decoded(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    k = key("nvidia-api-key", "staged-utf16")
    (repo / "keys.env").write_bytes(f"NVIDIA_API_KEY={k}\n".encode("utf-16"))
    git("add", "keys.env")
    assert where(scan(repo, staged=True)) == [("keys.env", 1, "nvidia-api-key")]


def test_only_real_virtualenvs_are_skipped(tmp_path: Path) -> None:
    k = key("groq-api-key", "venv")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "__init__.py").write_text(f'KEY = "{k}"\n')  # a package named venv: the project's own
    (tmp_path / "env-py311" / "lib").mkdir(parents=True)
    (tmp_path / "env-py311" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "env-py311" / "lib" / "dep.py").write_text(f'KEY = "{k}"\n')
    out = scan(tmp_path)
    assert where(out) == [("venv/__init__.py", 1, "groq-api-key")]
    assert out.files_skipped["excluded_dir"] == 1


@pytest.mark.parametrize("bad", ["", "a\x00b", "\x00"])
def test_empty_or_nul_paths_are_invalid_input(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):  # pydantic's ValidationError: the schema says so
        ScanSecretsInput(paths=[bad])
    with pytest.raises(ValueError):
        ScanSecretsInput(since=bad)
    with pytest.raises(ValueError):
        ScanSecretsInput(baseline=bad)
    # Callers that build the model without validation still get invalid_input, never a crash.
    raw = ScanSecretsInput.model_construct(paths=[bad], staged=False, since=None, baseline=None,
                                           max_file_bytes=1 << 20)
    with pytest.raises(InvalidInput):
        scan_secrets(SimpleNamespace(cwd=tmp_path), raw)


def test_empty_or_nul_paths_in_git_modes_are_invalid_input(git_repo: tuple[Path, Git]) -> None:
    repo, git = git_repo
    (repo / "a.txt").write_text("x\n")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    for bad in ("", "a\x00b"):
        raw = ScanSecretsInput.model_construct(paths=[bad], staged=True, since=None, baseline=None,
                                               max_file_bytes=1 << 20)
        with pytest.raises(InvalidInput):
            scan_secrets(SimpleNamespace(cwd=repo), raw)
    raw = ScanSecretsInput.model_construct(paths=[], staged=False, since="HEAD\x00", baseline=None,
                                           max_file_bytes=1 << 20)
    with pytest.raises(InvalidInput):
        scan_secrets(SimpleNamespace(cwd=repo), raw)
