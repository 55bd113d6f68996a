"""The instruction a sub-agent receives: its part, the whole it belongs to, and what it builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

MAX_DEPENDENCY_CHARS = 4_000  # each upstream output is cut to this, so prompts stay inside the share


def subtask_prompt(
    *,
    task_name: str,
    task_description: str,
    subtask_id: str,
    subtask_text: str,
    depends_on: Sequence[str],
    outputs: Mapping[str, str],
    share: int,
) -> str:
    parts = [
        f"You are one sub-agent of the task \"{task_name}\".",
        f"The whole task: {_whole(task_description)}",
        f"Your part ({subtask_id}): {subtask_text.strip()}",
    ]
    for dep in depends_on:
        text = outputs.get(dep, "").strip()
        if text:
            cut = text if len(text) <= MAX_DEPENDENCY_CHARS else text[:MAX_DEPENDENCY_CHARS] + " [...]"
            parts.append(f"Result of {dep}, which your part builds on:\n{cut}")
    parts.append(f"Your budget is {share:,} tokens in all: answer with your part's result only, concisely.")
    return "\n\n".join(parts)


@lru_cache(maxsize=16)
def _whole(task_description: str) -> str:
    """The task's description as every sub-agent's prompt quotes it. Remembered: the prompts of one task's sub-tasks
    quote the same text, and a list of 1,000 items is a 20 KB string that `strip` copied once per prompt."""
    return task_description.strip()[:2_000]


def spawn_label(task_name: str, subtask_id: str) -> str:
    """A label an OpenClaw sub-agent can carry: lowercase words and hyphens, at most 48 characters."""
    slug = "".join(c if c.isalnum() else "-" for c in task_name.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug[:40].rstrip('-') or 'task'}-{subtask_id}"
