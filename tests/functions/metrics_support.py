"""Reading a served `/metrics` (`stagegate.metrics`), as `curl` on a container's metrics port would."""

from __future__ import annotations

import urllib.request


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value of every stagegate series the process on `port` serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        series: float(value)
        for series, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("stagegate_")
        )
    }
