"""Example 1: allocate tokens for a PRD, settle usage as the work reports it, rotate at 75%, close.

Runs on the built-in demo provider: no API keys, no network. Run it with

    .venv/bin/python examples/01_token_allocation.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from butler_skill import Butler
from butler_skill.demo import demo_context
from butler_skill.demo_data import SAMPLE_PRD


def main() -> None:
    # A scratch folder holds the demo keys file and the ledger, so the example never touches your real ones.
    with tempfile.TemporaryDirectory(prefix="butler-ex1-") as tmp:
        prd = Path(tmp) / "prd.md"
        prd.write_text(SAMPLE_PRD, "utf-8")
        context = demo_context(Path(tmp))
        context.cwd = Path(tmp)  # prd_path may only name files in the working directory (or BUTLER_READ_PATHS)
        with Butler(context=context) as butler:
            run(butler, prd)


def run(butler: Butler, prd: Path) -> None:
    alloc = butler.allocate_tokens(prd_path=str(prd), label="market-brief")
    print(f"allocate_tokens: {alloc.estimate.requirements} requirements -> {alloc.estimate.formula}")
    print(f"  session {alloc.session_id}")
    print(f"  allocated {alloc.allocated:,} tokens on {alloc.key_id} ({alloc.provider}/{alloc.model}), "
          f"rotation threshold {alloc.rotation_threshold:,}, cost estimate ${alloc.cost_estimate:.4f}")

    # The host reports each provider response as it arrives. Four responses of 22% each: the fourth crosses
    # the 75% threshold, which raises an alert and (auto-rotate is on by default) moves what is left of the
    # allocation to the next key, so the rest of the work does not run one key dry.
    step = alloc.allocated * 22 // 100
    reported = 0
    for n in range(1, 5):
        r = butler.record_usage(session_id=alloc.session_id, request_id=f"resp-{n}",
                                input_tokens=step * 2 // 3, output_tokens=step - step * 2 // 3)
        reported += step
        print(f"record_usage resp-{n}: +{step:,} tokens, session used {r.session.used:,} of "
              f"{r.session.allocated:,} on {r.session.key_id} (status {r.status})")
        if r.alert:
            print(f"  ALERT: {r.alert.message}")
        if r.rotation and r.rotation.rotated:
            print(f"  ROTATED {r.rotation.from_key_id} -> {r.rotation.to_key_id}, "
                  f"{r.rotation.moved_tokens:,} tokens of the allocation moved")

    # Retried reports are normal (lost acknowledgements): the same request id is settled once.
    again = butler.record_usage(session_id=alloc.session_id, request_id="resp-4",
                                input_tokens=step * 2 // 3, output_tokens=step - step * 2 // 3)
    print(f"record_usage resp-4 again: duplicate={again.duplicate}, session used still {again.session.used:,}")

    # Closing hands back whatever the session still holds, so other work can use it today.
    closed = butler.record_usage(session_id=alloc.session_id, request_id="resp-final",
                                 input_tokens=0, output_tokens=0, close=True)
    print(f"closed: state {closed.session.state}, held {closed.session.held}, cost ${closed.session.cost:.6f}")
    print(f"reported in total: {reported:,} tokens")

    status = butler.get_status()
    print(f"get_status: {status.tokens.total_keys} keys, {status.tokens.active_sessions} open sessions, "
          f"{len(status.rotation_history)} rotation(s)")
    for event in status.rotation_history:
        print(f"  rotation {event.data['from_key_id']} -> {event.data['to_key_id']} ({event.data['reason']})")

    usage = butler.monitor_usage()
    for provider, p in usage.keys_by_provider.items():
        print(f"monitor_usage {provider}: capacity {p.total_capacity:,}, used {p.used_today:,}, "
              f"reserved {p.reserved:,}, remaining {p.remaining:,}, cost ${p.cost_today:.6f}")
    print(f"monitor_usage total: used {usage.total.used_today:,}, reserved {usage.total.reserved:,}")


if __name__ == "__main__":
    main()
