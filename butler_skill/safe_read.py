"""Reading a file a person or a caller names, safely: regular files only, never blocking, never unbounded.

Every path Butler reads (the keys file, treasury policy, scanner baselines, `prd_path`, `--input @file`)
goes through `read_text`. It refuses anything but a regular file before reading a byte (a FIFO would hang
the process forever, `/dev/zero` would eat memory), opens with O_NONBLOCK so a file swapped for a FIFO
between the check and the open cannot block either, re-checks the opened file, and reads at most the cap
of its kind plus one byte. Errors are the caller's kind (`config_error` for settings, `invalid_input` for
tool input) and name the file, the cause and a fix; they never quote the file's content.

Size caps (bytes), per kind of file:
    keys      1 MiB   a keys file of thousands of keys is a few hundred KiB
    policy    1 MiB   the treasury policy
    baseline 32 MiB   scanner baselines (one line per accepted finding)
    prd       4 MiB   a PRD to estimate (about a million tokens, far past any key's day)
    input    16 MiB   `butler call --input @file`
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from butler_skill.errors import ButlerError, ConfigError, InvalidInput, NotFound

MiB = 1024 * 1024
SIZE_CAPS: dict[str, int] = {
    "keys": 1 * MiB,
    "policy": 1 * MiB,
    "baseline": 32 * MiB,
    "prd": 4 * MiB,
    "input": 16 * MiB,
}
_ERRORS: dict[str, type[ButlerError]] = {"keys": ConfigError, "policy": ConfigError}

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _what(mode: int) -> str | None:
    """Why a file of this mode is refused, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bytes(path: Path | str, kind: str, /, *, label: str | None = None, **details: object) -> bytes:
    """The bytes of a regular file of at most SIZE_CAPS[kind] bytes; the kind's error otherwise."""
    cap = SIZE_CAPS[kind]
    error = _ERRORS.get(kind, InvalidInput)
    name = label or f"{kind} file"
    p = Path(path)
    info = {"file": str(p), **details}

    def fail(cause: str, fix: str) -> ButlerError:
        return error(f"cannot read {name} {p}: {cause}; {fix}", **info)

    if "\0" in str(p):
        raise fail("the path contains a NUL character", "give a valid path")
    try:
        before = os.stat(p)
    except FileNotFoundError:
        # A well-formed path to nothing: not_found for tool input (config files keep config_error).
        missing = NotFound if error is InvalidInput else error
        raise missing(f"cannot read {name} {p}: not found (no such file); check the path", **info) from None
    except OSError as exc:
        raise fail(exc.strerror or type(exc).__name__, "check the path and its permissions") from None
    refused = _what(before.st_mode)
    if refused:
        raise fail(f"it is {refused}, not a regular file", "give the path of a regular file")
    if before.st_size > cap:
        raise fail(f"it is {before.st_size:,} bytes, over the {cap:,}-byte limit for a {kind} file",
                   "use a smaller file")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise fail(exc.strerror or type(exc).__name__, "check the path and its permissions") from None
    try:
        after = os.fstat(fd)
        refused = _what(after.st_mode)
        if refused:  # swapped between the check and the open
            raise fail(f"it is {refused}, not a regular file", "give the path of a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            try:
                chunk = os.read(fd, min(1 * MiB, cap + 1 - size))
            except BlockingIOError:
                raise fail("reading it would block", "give the path of a regular file") from None
            except OSError as exc:
                raise fail(exc.strerror or type(exc).__name__, "check the disk and the file") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise fail(f"it grew past the {cap:,}-byte limit for a {kind} file", "use a smaller file")
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(path: Path | str, kind: str, /, *, label: str | None = None, errors: str = "strict",
              **details: object) -> str:
    """`read_bytes` decoded as UTF-8 (a leading BOM is dropped); strict decoding names the first bad byte."""
    data = read_bytes(path, kind, label=label, **details)
    try:
        return data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as exc:
        error = _ERRORS.get(kind, InvalidInput)
        raise error(f"cannot read {label or f'{kind} file'} {path}: it is not UTF-8 text (bad byte at offset "
                    f"{exc.start}); save it as UTF-8", **{"file": str(path), **details}) from None


def confined(path: Path, roots: list[Path]) -> bool:
    """Whether `path` (symlinks resolved) lies inside one of `roots` (resolved too)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            base = root.resolve()
        except (OSError, RuntimeError):
            continue
        if real == base or real.is_relative_to(base):
            return True
    return False
