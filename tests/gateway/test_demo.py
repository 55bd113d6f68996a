"""`butler demo` shows the gateway at work: calls through it, a rotation, a refusal, the status table."""

from __future__ import annotations

import io
import re
from pathlib import Path

from butler_skill.demo import run_demo


def test_the_demo_runs_calls_through_the_gateway(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(state_dir=tmp_path / "d", out=out) == 0
    text = out.getvalue()
    gateway = text[text.index("Gateway:"):]
    calls = re.findall(r"call (\d) \((json|stream)\): answered via (\S+);", gateway)
    assert len(calls) == 5
    rotation = re.search(r"rotation: (\S+) -> (\S+) \(threshold", gateway)
    assert rotation is not None
    assert calls[0][2] == rotation.group(1) and calls[-1][2] == rotation.group(2)
    assert "without a token: HTTP 401" in gateway and "HTTP 429" in gateway
    assert "0 open sessions" in gateway and "cost today" in gateway
