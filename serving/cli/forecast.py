"""Capacity forecasts for `timestamp,value` CSV files: the computation behind `automatrix forecast`.

Each input is a `timestamp,value` CSV (Unix seconds or ISO 8601, one form per file). Its step is
the median step between rows; the output `DIR/<input file name>` holds the `horizon` steps
after the input's last row, as `timestamp,forecast,lo_80,hi_80,lo_95,hi_95`, with timestamps in
the input's form. Every input is read and forecast before anything is written, and each output
is written to a temporary file and renamed, so a bad input leaves no partial output behind.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.anomaly import files
from monitoring.anomaly.files import DetectInputError, read_samples
from monitoring.assess.forecasting import Forecast, InsufficientHistory, forecast_capacity

OUTPUT_COLUMNS = ("timestamp", "forecast", "lo_80", "hi_80", "lo_95", "hi_95")
LEVELS = (80, 95)


class ForecastInputError(ValueError):
    """An input CSV that cannot be forecast; the message names the file and, when known, the row."""

    def __init__(self, path: Path, row: int | None, reason: str) -> None:
        where = f"{path}: row {row}" if row is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.row = row
        self.reason = reason


@dataclass(frozen=True)
class StampForm:
    """How a file writes its timestamps, so the output writes them the same way."""

    unix: bool
    integer: bool = True  # Unix seconds without a fraction
    separator: str = "T"  # ISO: between date and time
    zone: str = ""  # ISO: "", "Z" or "+00:00"

    def format(self, epoch: float) -> str:
        if self.unix:
            return str(int(round(epoch))) if self.integer else repr(float(epoch))
        stamp = datetime.fromtimestamp(epoch, tz=UTC)
        text = stamp.replace(tzinfo=None).isoformat(sep=self.separator)
        return text + self.zone


def stamp_form(raw: str) -> StampForm:
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return StampForm(unix=True, integer=number.is_integer() and "." not in text)
    separator = " " if len(text) > 10 and text[10] == " " else "T"
    if text.endswith(("Z", "z")):
        zone = "Z"
    elif len(text) > 10 and ("+" in text[10:] or "-" in text[10:]):
        zone = "+00:00"  # an offset: the output is in UTC
    else:
        zone = ""
    return StampForm(unix=False, separator=separator, zone=zone)


@dataclass(frozen=True)
class Series:
    path: Path
    epochs: np.ndarray
    values: np.ndarray
    form: StampForm
    rows: int


def read_series(path: Path) -> Series:
    """The samples of one file, in strictly increasing time, all in one timestamp form."""
    epochs: list[float] = []
    values: list[float] = []
    form: StampForm | None = None
    try:
        for row, raw_t, _, epoch, value in read_samples(path):
            this = stamp_form(raw_t)
            if form is None:
                form = this
            elif this.unix != form.unix:
                first = "Unix seconds" if form.unix else "ISO 8601"
                raise ForecastInputError(path, row, f"timestamp {raw_t!r} is not {first}")
            if epochs and epoch <= epochs[-1]:
                raise ForecastInputError(
                    path, row, f"timestamp {raw_t!r} is not after the previous row's"
                )
            epochs.append(epoch)
            values.append(value)
    except DetectInputError as exc:
        raise ForecastInputError(exc.path, exc.row, exc.reason) from None
    if form is None:  # read_samples refuses a file without rows; kept for the type checker
        raise ForecastInputError(path, 2, "no data rows after the header")
    if form.unix and not all(float(e).is_integer() for e in epochs):
        form = StampForm(unix=True, integer=False)
    return Series(path, np.asarray(epochs), np.asarray(values), form, len(epochs))


def forecast_series(series: Series, horizon: int) -> tuple[np.ndarray, Forecast]:
    """The output timestamps (epoch seconds) and the forecast of one input."""
    index = pd.to_datetime(series.epochs, unit="s", utc=True)
    try:
        forecast = forecast_capacity(pd.Series(series.values, index=index), horizon, LEVELS)
    except InsufficientHistory as exc:
        raise ForecastInputError(
            series.path, None, f"too little history in {series.rows} rows: {exc}"
        ) from None
    step = float(np.median(np.diff(series.epochs)))
    stamps = series.epochs[-1] + step * np.arange(1, horizon + 1)
    return stamps, forecast


def output_path(path: Path, output_dir: Path) -> Path:
    return output_dir / path.name


def check_targets(inputs: list[Path], output_dir: Path) -> None:
    try:
        files.check_targets(inputs, lambda path: output_path(path, output_dir))
    except DetectInputError as exc:
        raise ForecastInputError(exc.path, exc.row, exc.reason) from None


def write_forecast(target: Path, form: StampForm, stamps: np.ndarray, forecast: Forecast) -> None:
    """Write one output to a temporary file in `target`'s folder, then rename it."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(OUTPUT_COLUMNS)
            columns = (
                forecast.mean,
                forecast.lower[80],
                forecast.upper[80],
                forecast.lower[95],
                forecast.upper[95],
            )
            for i, epoch in enumerate(stamps):
                writer.writerow((form.format(float(epoch)), *(f"{c[i]:.10g}" for c in columns)))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def forecast_files(inputs: list[Path], horizon: int, output_dir: Path) -> None:
    """Forecast `horizon` steps of each `timestamp,value` CSV into `output_dir/<name>`.

    Raises ForecastInputError, naming the file and row, before writing anything if any input
    is bad (missing column, unparsable timestamp or value, empty, too little history).
    """
    if horizon < 1:
        raise ValueError(f"the horizon must be at least one step, not {horizon}")
    inputs = [Path(path) for path in inputs]
    output_dir = Path(output_dir)
    check_targets(inputs, output_dir)
    results = []
    for path in inputs:
        series = read_series(path)
        stamps, forecast = forecast_series(series, horizon)
        results.append((output_path(path, output_dir), series.form, stamps, forecast))
    output_dir.mkdir(parents=True, exist_ok=True)
    for target, form, stamps, forecast in results:
        write_forecast(target, form, stamps, forecast)
