"""What a model call through the gateway may spend before it is forwarded.

Pure: no I/O, no clock. The gateway asks these rules; the ledger enforces the grants they lead to.

Binding. A request is bound to a session by its model id, so that an unmodified host can bind it: OpenClaw's
``sessions_spawn`` takes a ``model`` ref ``provider/model``, split on the first ``/``, and sends the part after
it. The gateway reads (after an optional ``butler/`` prefix):

* ``ses_<id>`` or ``ses_<id>/<anything>``: bound to that session (its key and model are used);
* ``<model>`` or ``<provider>/<model>``: unbound, any key serving that model; ``auto``: any key at all.

An ``x-butler-session`` header binds too (for clients that can send headers).

Reservation. Before forwarding, a request holds ``prompt_estimate + max_tokens``: the prompt estimate is a
quarter of the request's JSON bytes (tools, system prompt and framing included, so it errs high), and
``max_tokens`` is the client's, else ``DEFAULT_MAX_TOKENS``. A bound request may hold only what its session
still has that no other request in flight holds; its output cap shrinks to fit, and when not even one
output token fits the request is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEFAULT_MAX_TOKENS = 4096
GATEWAY_PROVIDER = "butler"
ANY_MODEL = "auto"
_SESSION_RE = re.compile(r"^(ses_[A-Za-z0-9_-]+)(?:/(.*))?$")


@dataclass(frozen=True)
class Binding:
    session_id: str | None
    model: str | None  # None: any model (a bound session uses its key's)


def bind(model_id: str, session_header: str | None = None) -> Binding:
    """Which session (if any) and which model a request's model id names."""
    name = model_id.strip()
    if name.startswith(GATEWAY_PROVIDER + "/"):
        name = name[len(GATEWAY_PROVIDER) + 1:]
    if session_header:
        return Binding(session_header.strip(), None)
    m = _SESSION_RE.match(name)
    if m:
        return Binding(m.group(1), None)
    return Binding(None, None if name in ("", ANY_MODEL) else name)


def serves(model: str | None, key_provider: str, key_model: str) -> bool:
    """Whether a key serves the model a request named (None: any)."""
    return model is None or model in (key_model, f"{key_provider}/{key_model}")


def prompt_estimate(body_bytes: int) -> int:
    """Tokens the prompt may take: a quarter of the request's JSON bytes, rounded up (at least 1)."""
    return max(1, math.ceil(body_bytes / 4))


def requested_output(max_tokens: int | None, default: int = DEFAULT_MAX_TOKENS) -> int:
    """The output cap a request asks for: its own when given and positive, else the default."""
    return max_tokens if max_tokens is not None and max_tokens > 0 else default


def session_output_cap(*, held: int, in_flight: int, prompt: int, wanted: int) -> int:
    """How many output tokens a bound request may ask for: what its session holds, less what other requests
    in flight hold and its own prompt, at most what it asked for; 0 means it does not fit."""
    return max(0, min(wanted, held - in_flight - prompt))


def need(prompt: int, output_cap: int) -> int:
    """What a request reserves: its prompt estimate plus its output cap."""
    return prompt + output_cap
