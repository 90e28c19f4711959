"""The real capacity series the forecasting and scaling benchmarks use, and their fixed split.

Sources (all under ../shared): NAB's AWS CloudWatch series and nyc_taxi, Microsoft's cloud
monitoring series and the AIOps 2018 KPIs. Each series is `development` or `held_out` by a hash
of its id, fixed before any tuning: about one in three is held out. Tune on `development` only;
quote figures on `held_out`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAB = SHARED / "nab" / "data"
DATASETS = SHARED / "datasets"
Part = Literal["development", "held_out"]
HELD_OUT_ONE_IN = 3


@dataclass(frozen=True)
class CapacitySeries:
    id: str  # "<source>/<name>", stable across runs
    source: str
    path: Path

    @property
    def part(self) -> Part:
        return part_of(self.id)

    def load(self) -> pd.Series:
        """Values indexed by UTC timestamps, sorted, duplicates dropped, empty cells removed."""
        frame = pd.read_csv(self.path)
        stamps = frame["timestamp"]
        if pd.api.types.is_numeric_dtype(stamps):
            index = pd.to_datetime(stamps, unit="s", utc=True)
        else:
            index = pd.to_datetime(stamps, utc=True)
        series = pd.Series(frame["value"].astype(float).to_numpy(), index=index).dropna()
        return series[~series.index.duplicated(keep="last")].sort_index()


def part_of(series_id: str) -> Part:
    digest = int(hashlib.sha256(series_id.encode()).hexdigest(), 16)
    return "held_out" if digest % HELD_OUT_ONE_IN == 0 else "development"


def all_series() -> Iterator[CapacitySeries]:
    for path in sorted((NAB / "realAWSCloudwatch").glob("*.csv")):
        yield CapacitySeries(f"nab_aws/{path.stem}", "nab_aws", path)
    taxi = NAB / "realKnownCause" / "nyc_taxi.csv"
    yield CapacitySeries("nab/nyc_taxi", "nab", taxi)
    for path in sorted((DATASETS / "ms_cloud_monitoring").glob("*/*.csv.gz")):
        name = path.name.removesuffix(".csv.gz")
        yield CapacitySeries(f"ms_cloud/{name}", "ms_cloud", path)
    for path in sorted((DATASETS / "iops_aiops2018" / "preliminary_train").glob("*.csv.gz")):
        name = path.name.removesuffix(".csv.gz")
        yield CapacitySeries(f"aiops/{name}", "aiops", path)


def series_in(part: Part) -> list[CapacitySeries]:
    return [s for s in all_series() if s.part == part]


if __name__ == "__main__":
    for part in ("development", "held_out"):
        chosen = series_in(part)  # type: ignore[arg-type]
        by_source = pd.Series([s.source for s in chosen]).value_counts().to_dict()
        print(part, len(chosen), by_source)
