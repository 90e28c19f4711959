"""Anomaly scores for `timestamp,value` CSV files: the computation behind `automatrix detect`.

Every input is validated in full before any output is written, and each output is written to a
temporary file and renamed, so a reader never finds a partial file passed off as complete.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from monitoring.anomaly.detector import MetricAnomalyDetector

REQUIRED_COLUMNS = ("timestamp", "value")
OUTPUT_COLUMNS = ("timestamp", "value", "anomaly_score")


class DetectInputError(ValueError):
    """An input CSV that cannot be scored; the message names the file and, when known, the row."""

    def __init__(self, path: Path, row: int | None, reason: str) -> None:
        where = f"{path}: row {row}" if row is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.row = row
        self.reason = reason


# Rows are numbered as a spreadsheet shows them: the header is row 1, the first sample row 2.
Sample = tuple[int, str, str, float, float]  # (row, raw timestamp, raw value, epoch s, value)


def parse_timestamp(text: str) -> float:
    """Epoch seconds from an ISO 8601 timestamp (naive means UTC) or from epoch seconds."""
    text = text.strip()
    try:
        return _finite(float(text))
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def parse_value(text: str) -> float:
    """A finite float; NaN and infinities are refused because they would poison the detector."""
    return _finite(float(text))


def _finite(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError(f"{number} is not finite")
    return number


def read_samples(path: Path) -> Iterator[Sample]:
    """The samples of one file in file order, raising DetectInputError at the first bad row."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DetectInputError(path, None, f"cannot be read ({exc.strerror})") from exc
    with handle:
        yield from _parse_rows(path, csv.reader(handle))


def _parse_rows(path: Path, reader: Iterator[list[str]]) -> Iterator[Sample]:
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise DetectInputError(
            path, 1, "the file is empty: expected a 'timestamp,value' header"
        ) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DetectInputError(path, 1, f"not a readable CSV ({exc})") from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DetectInputError(path, 1, f"missing column(s) {', '.join(missing)} in the header")
    t_col, v_col = header.index("timestamp"), header.index("value")
    row, count = 1, 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DetectInputError(path, row + 1, f"not a readable CSV row ({exc})") from exc
        row += 1
        if not any(field.strip() for field in fields):
            continue  # a blank line carries no sample, so it is neither an error nor a row
        yield _parse_fields(path, row, fields, t_col, v_col)
        count += 1
    if count == 0:
        raise DetectInputError(path, 2, "no data rows after the header")


def _parse_fields(path: Path, row: int, fields: list[str], t_col: int, v_col: int) -> Sample:
    if len(fields) <= max(t_col, v_col):
        raise DetectInputError(path, row, f"expected at least {max(t_col, v_col) + 1} fields")
    raw_t, raw_v = fields[t_col], fields[v_col]
    try:
        epoch = parse_timestamp(raw_t)
    except (ValueError, OverflowError, OSError):
        raise DetectInputError(path, row, f"unparsable timestamp {raw_t!r}") from None
    try:
        value = parse_value(raw_v)
    except ValueError:
        raise DetectInputError(path, row, f"unparsable or non-finite value {raw_v!r}") from None
    return row, raw_t, raw_v, epoch, value


def output_path(path: Path, output_dir: Path) -> Path:
    return output_dir / f"{path.stem}.csv"


def check_targets(inputs: list[Path], target_of: Callable[[Path], Path]) -> None:
    """Refuses two inputs that would write one output, and an output that is its own input."""
    seen: dict[Path, Path] = {}
    for path in inputs:
        target = target_of(path)
        if target in seen:
            raise DetectInputError(
                path, None, f"its output {target} would overwrite {seen[target]}'s"
            )
        if target.resolve() == path.resolve():
            raise DetectInputError(path, None, "the output would overwrite the input itself")
        seen[target] = path


def validate_inputs(inputs: list[Path], output_dir: Path) -> None:
    """Read every input once without keeping it, so a bad file stops the run before any write."""
    check_targets(inputs, lambda path: output_path(path, output_dir))
    for path in inputs:
        for _ in read_samples(path):
            pass


def write_scores(
    path: Path, target: Path, make_detector: Callable[[], MetricAnomalyDetector]
) -> None:
    """Stream one file through a fresh detector into a temporary file, then rename it."""
    detector = make_detector()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(OUTPUT_COLUMNS)
            for _, raw_t, raw_v, epoch, value in read_samples(path):
                writer.writerow((raw_t, raw_v, f"{detector.update(value, epoch):.9f}"))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def detect_files(
    inputs: list[Path],
    output_dir: Path,
    make_detector: Callable[[], MetricAnomalyDetector] = MetricAnomalyDetector,
) -> list[Path]:
    """Score each `timestamp,value` CSV into `output_dir/<name>.csv`; returns the written paths.

    Raises DetectInputError, naming the file and row, before writing anything if any input is bad.
    """
    inputs = [Path(path) for path in inputs]
    output_dir = Path(output_dir)
    validate_inputs(inputs, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in inputs:
        target = output_path(path, output_dir)
        write_scores(path, target, make_detector)
        written.append(target)
    return written
