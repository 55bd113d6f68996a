"""Take the README's screenshot of the dashboard (docs/dashboard.png) with the system Chromium.

    .venv/bin/python -m tests.dashboard.screenshot [docs/dashboard.png] [width]

It seeds a scratch ledger through the tools (tests/dashboard/seed.py), serves the dashboard on loopback
under uvicorn, and saves a full-page screenshot.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, TODAY, TOKEN, serve
from tests.dashboard.seed import MovingClock, env_for, seed_month, seed_treasury


def main(out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    from butler_skill.host.context import Context

    with tempfile.TemporaryDirectory(prefix="butler-shot-") as scratch:
        clock = MovingClock(TODAY)
        ctx = Context(env=env_for(Path(scratch)), clock=clock)
        seed_month(ctx, clock, TODAY)
        fakes = seed_treasury(ctx, Path(scratch))
        server, thread, url = serve(ctx)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page.goto(f"{url}/dashboard?token={TOKEN}")
                page.wait_for_selector("#chart svg")
                page.wait_for_selector("#live:not(.off)")
                page.click("#treasury-refresh")
                page.wait_for_selector("[data-box=wallet] [data-field=usdc]")
                overflow = page.evaluate(
                    "[...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > "
                    "document.documentElement.clientWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className"
                    " + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))")
                if overflow:
                    print("wider than the page:", overflow)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(out), full_page=width > 600)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(15)
            ctx.close()
            for fake in fakes:
                fake.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 1280)
