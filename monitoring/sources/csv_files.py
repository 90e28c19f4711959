"""CSV files of samples: `service,timestamp,cpu_usage,memory_usage,network_latency,error_rate,request_count`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from monitoring.samples import METRICS

REQUIRED = ("service", "timestamp", *METRICS)


class CsvSourceError(ValueError):
    """A CSV file that cannot be read as samples at all."""


def read_csv(path: Path, default_service: str | None = None) -> list[dict[str, Any]]:
    """Raw rows with numbers parsed where they parse; validation is the ingestion's job."""
    if not path.is_file():
        raise CsvSourceError(f"{path}: no such file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = [
            c for c in REQUIRED if c not in columns and not (c == "service" and default_service)
        ]
        if missing:
            raise CsvSourceError(f"{path}: missing columns {', '.join(missing)}")
        return [_row(raw, default_service) for raw in reader]


def _row(raw: dict[str, str], default_service: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "service": raw.get("service") or default_service,
        "timestamp": raw["timestamp"],
    }
    for metric in METRICS:
        row[metric] = _number(raw.get(metric))
    return row


def _number(text: str | None) -> float | str | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text  # kept as text so validation reports the bad value with its row
