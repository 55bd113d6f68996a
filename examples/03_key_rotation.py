"""Example 3: key rotation when a person asks for it and when a provider pushes back.

The demo key set has two accounts: demo-a1 and demo-a2 share account A (and so share its rate limit),
demo-b1 is account B. One session moves:

1. by hand, to a key named by a person (demo-b1);
2. on a rate limit (HTTP 429 with Retry-After): the key rests for Retry-After and the session moves to
   *another account*, because every key of the throttled account is throttled too;
3. on a spent daily quota: the key is parked until the next 00:00 UTC (never retried today) and the
   session moves on, this time possibly within the same account (a quota belongs to the key);
4. by hand again, onto the parked key: Butler refuses.

Then the rotation history from get_status. Built-in demo provider: no API keys, no network.

    .venv/bin/python examples/03_key_rotation.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from butler_skill import Butler
from butler_skill.demo import demo_context
from butler_skill.errors import NoCapacity


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="butler-ex3-") as tmp, \
            Butler(context=demo_context(Path(tmp))) as butler:
        run(butler)


def run(butler: Butler) -> None:
    scopes = {k.key_id: k.scope for k in butler.get_available_keys().keys}
    print("keys: " + ", ".join(f"{k} ({s})" for k, s in scopes.items()))

    alloc = butler.allocate_tokens(prd_text="Research competitor pricing.", tokens=8_000, label="pricing")
    print(f"allocate_tokens: {alloc.allocated:,} tokens on {alloc.key_id}")

    # 1. A person wants this work on account B's key: name it.
    r = butler.rotate_key(session_id=alloc.session_id, new_key_id="demo-b1")
    print(f"manual: {r.rotation.from_key_id} -> {r.rotation.to_key_id}, {r.rotation.moved_tokens:,} tokens moved")

    # 2. The provider answered 429 with Retry-After: 20. Report it; Butler rests the key and leaves the account.
    r = butler.rotate_key(session_id=alloc.session_id, reason="rate_limit", retry_after_s=20)
    rl = r.rotation
    print(f"rate_limit: {rl.from_key_id} ({scopes[rl.from_key_id]}) -> {rl.to_key_id} ({scopes[rl.to_key_id]}), "
          f"{rl.from_key_id} rests until {rl.cooldown_until:%H:%M:%S} UTC")

    # 3. The new key's daily quota is gone (429 insufficient_quota). Retrying today would only fail again.
    r = butler.rotate_key(session_id=alloc.session_id, reason="quota_exhausted")
    q = r.rotation
    print(f"quota_exhausted: {q.from_key_id} -> {q.to_key_id}, "
          f"{q.from_key_id} parked until {q.cooldown_until:%Y-%m-%d %H:%M} UTC")

    # 4. Moving back onto the parked key by name is refused, and the session stays where it is.
    try:
        butler.rotate_key(session_id=alloc.session_id, new_key_id=q.from_key_id)
        print(f"manual onto parked {q.from_key_id}: accepted (unexpected)")
    except NoCapacity as exc:
        print(f"manual onto parked {q.from_key_id}: refused ({exc.code})")

    usable = [k.key_id for k in butler.get_available_keys().keys]
    print(f"usable now: {', '.join(usable)}")

    status = butler.get_status(history_limit=10)
    session = next(s for s in status.sessions if s.session_id == alloc.session_id)
    print(f"session now on {session.key_id}, holding {session.held:,} tokens")
    print(f"rotation history ({len(status.rotation_history)} events, newest first):")
    for e in status.rotation_history:
        until = e.data.get("cooldown_until")
        rest = f", {e.data['from_key_id']} rests until {until[:19]}Z" if until else ""
        print(f"  {e.data['reason']}: {e.data['from_key_id']} -> {e.data['to_key_id']}{rest}")

    butler.record_usage(session_id=alloc.session_id, request_id="done", input_tokens=0, output_tokens=0, close=True)


if __name__ == "__main__":
    main()
