"""The Prometheus source, against a real Prometheus server scraping a real node_exporter."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from monitoring.samples import validate
from monitoring.sources.prometheus import PrometheusError, fetch
from tests.support.net import free_port

pytestmark = pytest.mark.slow


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, exporter = shutil.which("prometheus"), shutil.which("prometheus-node-exporter")
    if not server or not exporter:
        pytest.skip(
            "Debian's prometheus and prometheus-node-exporter are not installed (.ci/run installs them)"
        )
    folder = tmp_path_factory.mktemp("prometheus")
    exporter_port, server_port = free_port(), free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        f"  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{server_port}']}}]\n"
    )
    processes = [
        subprocess.Popen(
            [exporter, f"--web.listen-address=127.0.0.1:{exporter_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                server,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{server_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        url = f"http://127.0.0.1:{server_port}"
        _wait(f"{url}/-/ready")
        yield url
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _window() -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    return end - timedelta(seconds=30), end


def test_fetch_prometheus_returns_valid_samples_per_instance(prometheus: str) -> None:
    queries = {
        "network_latency": "1000 * avg by (instance) (scrape_duration_seconds)",
        "error_rate": "100 * (1 - avg by (instance) (up))",
        "request_count": "avg by (instance) (scrape_samples_scraped)",
    }
    deadline = time.monotonic() + 40
    rows = fetch(prometheus, *_window(), step=timedelta(seconds=2), queries=queries)
    while not rows and time.monotonic() < deadline:  # rate() needs two scrapes in its range
        time.sleep(2)
        rows = fetch(prometheus, *_window(), step=timedelta(seconds=2), queries=queries)
    assert rows, "Prometheus returned no joined samples"
    checked = validate(rows)
    assert checked.rejected == [] and checked.accepted
    assert all(row["service"].startswith("127.0.0.1:") for row in rows)


def test_fetch_prometheus_reports_a_bad_query(prometheus: str) -> None:
    with pytest.raises(PrometheusError, match="failed"):
        fetch(prometheus, *_window(), queries={"cpu_usage": "rate(("})


def test_fetch_prometheus_reports_an_unreachable_server() -> None:
    with pytest.raises(PrometheusError, match="unreachable"):
        fetch(f"http://127.0.0.1:{free_port()}", *_window())
