"""The live dashboard in a real headless Chromium: it loads, names the champion, and follows pushes."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.live import LiveServer
from tests.support.models import SAMPLE

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_dashboard_page_is_served_without_external_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/static/dashboard.js").status_code == 200


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_shows_champion_and_chart_follows_pushed_samples(
    live_server: LiveServer, champion: str
) -> None:
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    base = f"http://{live_server.url}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    rows = [
        {"service": "checkout", "timestamp": (start + timedelta(minutes=i)).isoformat(), **SAMPLE}
        for i in range(5)
    ]
    httpx.post(f"{base}/api/v2/metrics", json={"samples": rows}).raise_for_status()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.wait_for_function(
                "document.getElementById('champion-version').textContent !== '–'", timeout=15_000
            )
            assert page.text_content("#champion-version") == champion
            chart = '.service[data-service="checkout"] svg[data-metric="cpu_usage"]'
            page.wait_for_selector(f'{chart}[data-points="5"]', timeout=15_000)
            more = [
                {
                    **row,
                    "timestamp": (start + timedelta(minutes=5 + i)).isoformat(),
                    "cpu_usage": 20.0 + i,
                }
                for i, row in enumerate(rows[:3])
            ]
            httpx.post(f"{base}/api/v2/metrics", json={"samples": more}).raise_for_status()
            page.wait_for_selector(f'{chart}[data-points="8"]', timeout=15_000)
            value = page.text_content(
                '.service[data-service="checkout"] .value[data-metric="cpu_usage"]'
            )
            assert value == "22.00"
        finally:
            browser.close()
