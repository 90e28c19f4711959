"""NeuroWeaver's pure parts: labels, time split, feature pipeline, model files, labelled rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.labels import HORIZON_MINUTES, TARGET, label_frame, samples_frame
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
from monitoring.neuroweaver.training import (
    Hyperparameters,
    TrainingDataError,
    labelled_rows_frame,
    split_by_time,
    train_model,
)
from monitoring.samples import METRICS
from monitoring.sources.simulator import simulate

START = datetime(2026, 3, 2, tzinfo=UTC)


def _frame(hours: int = 12) -> pd.DataFrame:
    window = simulate(START, START + timedelta(hours=hours), ["a", "b", "c"], incidents_per_day=6)
    return label_frame(samples_frame(window.samples))


def test_label_score_is_share_of_next_minutes_meeting_objectives() -> None:
    stamps = [START + timedelta(minutes=i) for i in range(7)]
    latency = [100, 100, 900, 100, 100, 100, 100]  # minute 2 breaks the latency objective
    frame = pd.DataFrame(
        {
            "service": "a",
            "timestamp": stamps,
            "cpu_usage": 1.0,
            "memory_usage": 1.0,
            "network_latency": latency,
            "error_rate": 0.0,
            "request_count": 1.0,
        }
    )
    labelled = label_frame(frame, horizon=HORIZON_MINUTES)
    assert labelled[TARGET].tolist() == [0.8, 0.8]


def test_label_frame_drops_rows_whose_horizon_crosses_a_gap() -> None:
    stamps = [START + timedelta(minutes=i) for i in (0, 1, 2, 3, 4, 5, 30, 31)]
    frame = pd.DataFrame({"service": "a", "timestamp": stamps, **{m: 1.0 for m in METRICS}})
    assert label_frame(frame)["timestamp"].tolist() == [START]


def test_split_by_time_orders_parts_with_a_gap_of_one_horizon() -> None:
    split = split_by_time(_frame())
    gap = pd.Timedelta(minutes=HORIZON_MINUTES)
    assert split.train["timestamp"].max() + gap < split.validation["timestamp"].min()
    assert split.validation["timestamp"].max() + gap < split.test["timestamp"].min()


def test_split_by_time_refuses_too_little_data() -> None:
    with pytest.raises(TrainingDataError, match="at least"):
        split_by_time(_frame().head(10))


def test_feature_pipeline_round_trips_through_its_dict() -> None:
    raw = np.abs(np.random.default_rng(0).normal(50, 20, size=(100, 5)))
    pipeline = FeaturePipeline.fit(raw)
    again = FeaturePipeline.from_dict(pipeline.to_dict())
    np.testing.assert_array_equal(pipeline.transform(raw), again.transform(raw))


def test_model_saved_and_loaded_gives_same_predictions(tmp_path: Path) -> None:
    raw = np.abs(np.random.default_rng(1).normal(50, 20, size=(64, 5)))
    arch = Architecture(layers=2, width=16, dropout=0.2, activation="gelu")
    model = NeuroWeaverModel(arch, FeaturePipeline.fit(raw), build_network(arch))
    loaded = NeuroWeaverModel.load_dir(model.save(tmp_path)[0].parent)
    np.testing.assert_allclose(model.predict(raw), loaded.predict(raw), rtol=0, atol=1e-7)
    assert ((loaded.predict(raw) >= 0) & (loaded.predict(raw) <= 1)).all()


def test_model_load_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    raw = np.ones((4, 5))
    small = NeuroWeaverModel(
        Architecture(width=16), FeaturePipeline.fit(raw), build_network(Architecture(width=16))
    )
    small.save(tmp_path)
    (tmp_path / "config.json").write_text(
        (tmp_path / "config.json").read_text().replace('"width": 16', '"width": 32')
    )
    with pytest.raises(RuntimeError):
        NeuroWeaverModel.load_dir(tmp_path)


def test_train_model_learns_better_than_the_mean() -> None:
    split = split_by_time(_frame(hours=48))
    params = Hyperparameters(
        Architecture(layers=2, width=32, dropout=0.0), learning_rate=3e-3, epochs=4
    )
    model, losses = train_model(params, split)
    test_x, test_y = split.test[list(METRICS)].to_numpy(), split.test[TARGET].to_numpy()
    constant = split.train[TARGET].mean()
    assert np.mean((model.predict(test_x) - test_y) ** 2) < np.mean((constant - test_y) ** 2)
    assert len(losses) == 4


def test_labelled_rows_rejects_bad_row_with_its_number() -> None:
    good = {
        "cpu_usage": 10,
        "memory_usage": 20,
        "network_latency": 30,
        "error_rate": 0,
        "request_count": 5,
        "performance_score": 0.9,
    }
    with pytest.raises(TrainingDataError, match="row 1: performance_score=1.5 is outside"):
        labelled_rows_frame([good, good | {"performance_score": 1.5}])
    with pytest.raises(TrainingDataError, match="row 2: cpu_usage must be finite"):
        labelled_rows_frame([good, good, good | {"cpu_usage": float("nan")}])
    with pytest.raises(TrainingDataError, match="row 0: memory_usage is missing"):
        labelled_rows_frame([{k: v for k, v in good.items() if k != "memory_usage"}])
