"""Live progress lines for people (stderr in a terminal); JSON on stdout stays clean."""

from __future__ import annotations

import sys
from typing import Any, TextIO

ICONS = {"waiting": "·", "running": "▶", "retrying": "↻", "rotated": "⇄", "success": "✓", "failed": "✗",
         "timeout": "⌛", "cancelled": "–"}


def progress_line(event: Any) -> str:
    facts = [f"on {event.key_id}" if event.key_id else "", f"attempt {event.attempt}" if event.attempt > 1 else "",
             f"{event.tokens:,} tokens" if event.tokens else ""]
    detail = ", ".join(f for f in facts if f)
    note = (" - " if detail else "") + event.message if event.message else ""
    return f"  {ICONS.get(event.status, '?')} {event.subtask_id:<6} {event.status:<9} {detail}{note}".rstrip()


def printer(stream: TextIO | None = None) -> Any:
    out = stream or sys.stderr

    def show(event: Any) -> None:
        print(progress_line(event), file=out, flush=True)

    return show
