"""The Chromium the canvas's browser test and latency benchmark drive: one home for its path and flags.

Debian's ``chromium`` package driven by Playwright for Python (Playwright's own browser download is
not reachable here), headless, without a sandbox (root in CI) or the GPU, and without the background
traffic a fresh profile would start.
"""

from __future__ import annotations

import os
from typing import Any, Optional

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing_reason() -> Optional[str]:
    """Why the browser cannot run here (a skip reason naming the fix), or None when it can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the dev extra brings it)"
    return None


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True)
