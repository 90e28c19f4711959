"""The Optuna search: pruning, nested MLflow runs, and two workers sharing one study."""

from __future__ import annotations

import threading
from dataclasses import replace

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from monitoring.neuroweaver.search import SearchResult, SearchSettings, open_study, run_search
from monitoring.neuroweaver.training import Split
from serving.settings import ServingSettings

RNG = np.random.default_rng(3)


def _part(n: int) -> pd.DataFrame:
    x = np.column_stack(
        [
            RNG.uniform(0, 100, n),
            RNG.uniform(0, 100, n),
            RNG.uniform(10, 500, n),
            RNG.uniform(0, 10, n),
            RNG.uniform(10, 3000, n),
        ]
    )
    frame = pd.DataFrame(
        x, columns=["cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count"]
    )
    return frame.assign(performance_score=np.clip(1 - x[:, 2] / 500, 0, 1))


SPLIT = Split(_part(300), _part(80), _part(80))


def _parent() -> tuple[str, str]:
    experiment = mlflow.set_experiment("search-test")
    run = MlflowClient().create_run(experiment.experiment_id)
    return experiment.experiment_id, run.info.run_id


def _search(storage: str, study: str, trials: int) -> SearchResult:
    experiment_id, parent = _parent()
    settings = SearchSettings(
        trials=trials, timeout_s=120, storage=storage, study_name=study, max_epochs=3, seed=1
    )
    return run_search(SPLIT, settings, experiment_id, parent)


def test_search_reports_progress_per_epoch(settings: ServingSettings) -> None:
    seen: list[tuple[int, int]] = []
    experiment_id, parent = _parent()
    search = SearchSettings(
        trials=2, storage=settings.optuna_storage, study_name="progress", max_epochs=3, seed=0
    )
    run_search(
        SPLIT, search, experiment_id, parent, progress=lambda t, e, _loss: seen.append((t, e))
    )
    assert {trial for trial, _ in seen} == {0, 1}


def test_search_records_every_trial_in_the_study(settings: ServingSettings) -> None:
    result = _search(settings.optuna_storage, "no-prune", 4)
    study = open_study(
        SearchSettings(storage=settings.optuna_storage, study_name="no-prune", prune=False)
    )
    assert result.complete + result.pruned == 4
    assert len(study.trials) == 4


def _share_one_study(storage: str) -> None:
    results: list[SearchResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(_search(storage, "shared", 3)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [trial.number for trial in study.trials]
    assert len(results) == 2
    assert sorted(numbers) == list(range(6))  # none lost, none duplicated
    assert all(
        t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for t in study.trials
    )


def test_two_workers_share_one_study_on_sqlite(settings: ServingSettings) -> None:
    _share_one_study(settings.optuna_storage)


@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(
    settings: ServingSettings, postgres_url: str
) -> None:
    _share_one_study(postgres_url)


def test_search_settings_default_to_a_bounded_search() -> None:
    defaults = SearchSettings()
    assert defaults.timeout_s is not None and defaults.trials >= 10
    assert replace(defaults, prune=False).prune is False
