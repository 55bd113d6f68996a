"""Where scanned text comes from: files and directories, the git index (--staged), git history (--since).

Each source yields `TextUnit`s (a path, its text, and which lines count) and counts what it skipped, so
the scanner itself stays pure. Git is run as a subprocess with fixed flags so that user configuration
(external diff drivers, colour, prefixes, textconv) cannot change what is parsed.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from butler_skill.errors import ConfigError, InvalidInput, NotFound

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
_BINARY_SNIFF = 8192

# Directories that hold tools' caches and installed dependencies, not the project's own text.
SKIP_DIRS: frozenset[str] = frozenset({
    ".git", ".hg", ".svn", ".bzr", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", ".tox", ".nox", "node_modules", ".eggs",
})
# Virtualenvs are skipped by their marker file (pyvenv.cfg), whatever their name: a package or folder
# merely named `venv` is the project's own text.
BINARY_EXTS: frozenset[str] = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd", ".pdf", ".zip",
    ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".jar", ".war", ".class", ".so", ".dylib", ".dll",
    ".exe", ".o", ".a", ".lib", ".pyc", ".pyo", ".whl", ".egg", ".woff", ".woff2", ".ttf", ".otf", ".eot",
    ".mp3", ".mp4", ".mov", ".avi", ".wav", ".flac", ".ogg", ".webm", ".mkv", ".sqlite", ".sqlite3",
    ".npy", ".npz", ".pkl", ".parquet", ".bin",
})


@dataclass(frozen=True)
class TextUnit:
    """Text to scan. `line_offset` shifts its line numbers; `added_lines` (absolute) limits which count."""

    path: str
    text: str
    line_offset: int = 0
    added_lines: frozenset[int] | None = None
    commit: str | None = None


@dataclass
class ScanStats:
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF8, "utf-8"))


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text written without a BOM: ASCII in it shows as NUL at every odd (LE) or even (BE) byte."""
    sample = data[:_BINARY_SNIFF - _BINARY_SNIFF % 2]
    if len(sample) < 4:
        return None
    odd, even = sample[1::2], sample[0::2]
    for nuls, other, enc in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if nuls.count(0) >= 0.9 * len(nuls) and other.count(0) == 0:
            try:
                return data.decode(enc)
            except UnicodeDecodeError:
                return None
    return None


def decode_text(data: bytes) -> str | None:
    """The text in `data`, or None when it is binary. UTF-8 by default; UTF-16/32 by BOM, or UTF-16 without
    one (Windows tools write `.env` and `.ps1` files that way); anything else with a NUL byte is binary."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(enc)
            except UnicodeDecodeError:
                return data[len(bom):].decode(enc, errors="replace")
    if b"\0" not in data[:_BINARY_SNIFF]:
        return _decode(data)
    return _utf16_without_bom(data)


def _ext(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def _display(path: Path, cwd: Path) -> str:
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


# ---------------------------------------------------------------------------------------------------------
# Files and directories.


def _read_file(path: Path, shown: str, stats: ScanStats, max_bytes: int) -> TextUnit | None:
    try:
        st = path.lstat()
    except OSError:
        stats.skipped["unreadable"] += 1
        return None
    if stat.S_ISLNK(st.st_mode):
        stats.skipped["symlink"] += 1
        return None
    if not stat.S_ISREG(st.st_mode):
        stats.skipped["special"] += 1
        return None
    if _ext(shown) in BINARY_EXTS:
        stats.skipped["binary"] += 1
        return None
    if st.st_size > max_bytes:
        stats.skipped["too_large"] += 1
        return None
    try:
        data = path.read_bytes()
    except OSError:
        stats.skipped["unreadable"] += 1
        return None
    text = decode_text(data)
    if text is None:
        stats.skipped["binary"] += 1
        return None
    stats.files_scanned += 1
    stats.bytes_scanned += len(data)
    return TextUnit(path=shown, text=text)


def _is_virtualenv(path: Path) -> bool:
    """A real virtualenv (PEP 405 marker file), not merely a folder named like one."""
    return (path / "pyvenv.cfg").is_file()


def _walk(root: Path, stats: ScanStats, skip_dirs: frozenset[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        kept = []
        for d in sorted(dirnames):
            if d in skip_dirs or _is_virtualenv(Path(dirpath) / d):
                stats.skipped["excluded_dir"] += 1
            else:
                kept.append(d)
        dirnames[:] = kept  # os.walk does not follow symlinked directories
        for name in sorted(filenames):
            yield Path(dirpath) / name


def iter_files(
    paths: Sequence[str],
    cwd: Path,
    stats: ScanStats,
    max_bytes: int = DEFAULT_MAX_BYTES,
    skip_dirs: frozenset[str] = SKIP_DIRS,
) -> Iterator[TextUnit]:
    """Files named, and every file under directories named (skipping SKIP_DIRS), in a stable order."""
    resolved: list[Path] = []
    for raw in paths:
        if not raw or "\0" in raw:
            raise InvalidInput("a path must be non-empty and hold no NUL byte", path=raw.replace("\0", "\\0"))
        p = Path(raw)
        p = p if p.is_absolute() else cwd / p
        if not p.exists() and not p.is_symlink():
            raise NotFound(f"no such file or directory: {raw}", path=raw)
        resolved.append(p)
    for p in resolved:
        if p.is_dir() and not p.is_symlink():
            for f in _walk(p, stats, skip_dirs):
                unit = _read_file(f, _display(f, cwd), stats, max_bytes)
                if unit is not None:
                    yield unit
        else:
            unit = _read_file(p, _display(p, cwd), stats, max_bytes)
            if unit is not None:
                yield unit


# ---------------------------------------------------------------------------------------------------------
# Git.

_GIT_BASE = ("git", "-c", "core.quotepath=off", "-c", "diff.noprefix=false", "-c", "color.ui=never")
_DIFF_FLAGS = (
    "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative", "-U0", "--src-prefix=a/", "--dst-prefix=b/",
    "--diff-filter=ACMR",
)
_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_OCTAL = re.compile(rb"\\([0-7]{3})")
_BINARY_LINE = re.compile(rb"^Binary files .* and (\"?b/.*?\"?) differ$")
_ESCAPES = {b"a": b"\a", b"b": b"\b", b"t": b"\t", b"n": b"\n", b"v": b"\v", b"f": b"\f", b"r": b"\r",
            b'"': b'"', b"\\": b"\\"}


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_LITERAL_PATHSPECS"] = "1"  # a path named `*.py` means that file, not a glob
    env.pop("GIT_EXTERNAL_DIFF", None)
    env["LC_ALL"] = "C"
    return env


def _git(cwd: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(
            [*_GIT_BASE, *args], cwd=cwd, input=input_bytes, capture_output=True, env=_git_env(), check=False
        )
    except FileNotFoundError as exc:
        raise ConfigError("git is not installed or not on PATH: install git to scan staged changes or history") from exc
    if proc.returncode != 0:
        message = _decode(proc.stderr).strip().splitlines()
        raise InvalidInput(
            f"git {args[0]} failed: {message[-1] if message else 'exit ' + str(proc.returncode)}",
            cwd=str(cwd),
        )
    return proc.stdout


def repo_root(cwd: Path) -> Path:
    """The work tree's top level, or InvalidInput when cwd is not inside a git work tree."""
    if not cwd.is_dir():
        raise NotFound(f"working directory does not exist: {cwd}", cwd=str(cwd))
    try:
        out = _git(cwd, "rev-parse", "--show-toplevel")
    except InvalidInput as exc:
        raise NotFound(f"not inside a git repository: {cwd}", cwd=str(cwd)) from exc
    return Path(_decode(out).strip())


def _unquote_path(raw: bytes) -> bytes:
    """Undo git's C-style quoting of unusual paths ("a\\tb", "\\303\\251")."""
    if not (raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2):
        return raw
    body = raw[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i:i + 1]
        if c == b"\\" and i + 1 < len(body):
            m = _OCTAL.match(body, i)
            if m:
                out.append(int(m.group(1), 8))
                i = m.end()
                continue
            nxt = body[i + 1:i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += c
        i += 1
    return bytes(out)


def _path_str(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@dataclass
class _FilePatch:
    path: str
    added: list[tuple[int, list[bytes]]] = field(default_factory=list)  # (first line, lines) per hunk
    binary: bool = False


def _parse_patch(lines: Iterator[bytes]) -> Iterator[tuple[str | None, _FilePatch]]:
    """Parse `git diff -U0` / `git log -p -U0` output into files with their added hunks.

    Yields (commit, file). Commits are announced by a line `\\0commit <sha>` (our --format).
    """
    commit: str | None = None
    current: _FilePatch | None = None
    remaining = 0
    hunk: list[bytes] = []
    hunk_start = 0

    def close_hunk() -> None:
        if current is not None and hunk:
            current.added.append((hunk_start, list(hunk)))
        hunk.clear()

    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if remaining > 0:
            if line.startswith(b"+"):
                hunk.append(line[1:])
                remaining -= 1
                continue
            if line.startswith((b"-", b"\\")):
                continue
            remaining = 0  # malformed: fall through to header parsing
        if line.startswith(b"\\"):
            continue  # "\ No newline at end of file"
        if line.startswith(b"\0commit "):
            close_hunk()
            if current is not None:
                yield commit, current
                current = None
            commit = line[8:].decode("ascii", errors="replace").strip()
            continue
        if line.startswith(b"diff --git "):
            close_hunk()
            if current is not None:
                yield commit, current
            current = _FilePatch(path="")
            continue
        if current is None:
            continue
        if line.startswith(b"+++ "):
            target = _unquote_path(line[4:].rstrip(b"\t"))
            if target.startswith(b"b/"):
                current.path = _path_str(target[2:])
            continue
        if line.startswith(b"Binary files ") or line.startswith(b"GIT binary patch"):
            current.binary = True
            named = _BINARY_LINE.match(line)
            if named and not current.path:
                target = _unquote_path(named.group(1))
                current.path = _path_str(target[2:]) if target.startswith(b"b/") else current.path
            continue
        m = _HUNK.match(line)
        if m:
            close_hunk()
            hunk_start = int(m.group(1))
            remaining = int(m.group(2)) if m.group(2) is not None else 1
            continue
    close_hunk()
    if current is not None:
        yield commit, current


def _raw_entries(out: bytes) -> list[tuple[str, str, str]]:
    """`git diff --raw -z` records → (new mode, new blob sha, path)."""
    fields = out.split(b"\0")
    entries: list[tuple[str, str, str]] = []
    i = 0
    while i < len(fields) and fields[i]:
        meta = fields[i].decode("ascii", errors="replace").lstrip(":").split()
        status = meta[4] if len(meta) > 4 else ""
        if status[:1] in ("R", "C"):
            path = fields[i + 2]
            i += 3
        else:
            path = fields[i + 1]
            i += 2
        entries.append((meta[1], meta[3], _path_str(path)))
    return entries


def _cat_blobs(root: Path, shas: Sequence[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = _git(root, "cat-file", "--batch", input_bytes="".join(s + "\n" for s in shas).encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    for sha in shas:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if len(header) < 3 or header[1] == b"missing":
            pos = nl + 1
            continue
        size = int(header[2])
        blobs[sha] = out[nl + 1:nl + 1 + size]
        pos = nl + 1 + size + 1
    return blobs


def _blob_sizes(root: Path, shas: Sequence[str]) -> dict[str, int]:
    if not shas:
        return {}
    out = _git(root, "cat-file", "--batch-check", input_bytes="".join(s + "\n" for s in shas).encode())
    sizes: dict[str, int] = {}
    for row in out.splitlines():
        parts = row.split()
        if len(parts) >= 3 and parts[1] != b"missing":
            sizes[parts[0].decode()] = int(parts[2])
    return sizes


def _pathspec(paths: Sequence[str]) -> list[str]:
    for raw in paths:
        if not raw or "\0" in raw:
            raise InvalidInput("a path must be non-empty and hold no NUL byte", path=raw.replace("\0", "\\0"))
    return ["--", *paths] if paths else []


def iter_staged(
    cwd: Path, paths: Sequence[str], stats: ScanStats, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[TextUnit]:
    """What a commit would add: each staged file's index blob, with only its added lines counting."""
    root = repo_root(cwd)
    spec = _pathspec(paths)
    entries = _raw_entries(_git(
        cwd, "diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-relative", "--diff-filter=ACMR", *spec
    ))
    patch = _git(cwd, "diff", "--cached", *_DIFF_FLAGS, *spec)
    added: dict[str, set[int]] = {}
    binary: set[str] = set()
    for _, fp in _parse_patch(iter(patch.splitlines(keepends=True))):
        if fp.binary:
            binary.add(fp.path)
        lines = added.setdefault(fp.path, set())
        for start, hunk in fp.added:
            lines.update(range(start, start + len(hunk)))
    wanted: list[tuple[str, str]] = []
    for mode, sha, path in entries:
        if mode == "160000":
            stats.skipped["submodule"] += 1
        elif mode == "120000":
            stats.skipped["symlink"] += 1
        elif _ext(path) in BINARY_EXTS:
            stats.skipped["binary"] += 1
        elif path in binary:
            wanted.append((sha, path))  # git calls UTF-16 text binary: decoded below, every line counts
        elif not added.get(path):
            stats.skipped["no_added_lines"] += 1
        else:
            wanted.append((sha, path))
    sizes = _blob_sizes(root, [sha for sha, _ in wanted])
    small = []
    for sha, path in wanted:
        if sizes.get(sha, 0) > max_bytes:
            stats.skipped["too_large"] += 1
        else:
            small.append((sha, path))
    blobs = _cat_blobs(root, sorted({sha for sha, _ in small}))
    for sha, path in small:
        data = blobs.get(sha)
        if data is None:
            stats.skipped["unreadable"] += 1
            continue
        text = decode_text(data)
        if text is None:
            stats.skipped["binary"] += 1
            continue
        stats.files_scanned += 1
        stats.bytes_scanned += len(data)
        yield TextUnit(path=path, text=text, added_lines=None if path in binary else frozenset(added[path]))


def verify_rev(cwd: Path, rev: str) -> str:
    """The full commit id `rev` names, or InvalidInput."""
    if not rev or rev.startswith("-") or "\0" in rev or any(c.isspace() for c in rev):
        raise InvalidInput(f"not a revision: {rev!r}", rev=rev.replace("\0", "\\0"))
    repo_root(cwd)
    proc = subprocess.run(
        [*_GIT_BASE, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=cwd, capture_output=True, env=_git_env(), check=False,
    )
    if proc.returncode != 0:
        raise NotFound(f"unknown revision: {rev!r}", rev=rev)
    return _decode(proc.stdout).strip()


def iter_history(
    cwd: Path, rev: str, paths: Sequence[str], stats: ScanStats, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[TextUnit]:
    """Lines added by each commit in REV..HEAD (one unit per hunk, tagged with its commit)."""
    base = verify_rev(cwd, rev)
    cmd = [*_GIT_BASE, "log", "--format=format:%x00commit %H", "-p", *_DIFF_FLAGS, f"{base}..HEAD",
           *_pathspec(paths)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_git_env())
    assert proc.stdout is not None
    try:
        for commit, fp in _parse_patch(iter(proc.stdout)):
            if fp.binary or _ext(fp.path) in BINARY_EXTS:
                stats.skipped["binary"] += 1
                continue
            if not fp.added:
                continue
            size = sum(len(b) + 1 for _, hunk in fp.added for b in hunk)
            if size > max_bytes:
                stats.skipped["too_large"] += 1
                continue
            stats.files_scanned += 1
            stats.bytes_scanned += size
            for start, hunk in fp.added:
                yield TextUnit(
                    path=fp.path,
                    text=_decode(b"\n".join(hunk)),
                    line_offset=start - 1,
                    commit=commit,
                )
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read() if proc.stderr else b""
        code = proc.wait()
    if code != 0:
        lines = _decode(stderr).strip().splitlines()
        raise InvalidInput(f"git log failed: {lines[-1] if lines else code}", rev=rev)
