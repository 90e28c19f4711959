"""RelayCore's policy search: the searched knobs beside the defaults, on the part of the calls the
search tuned on and on the later part it never saw, in one run.

Run: nice -n 10 .venv/bin/python benchmarks/relaycore_policy_bench.py [--trials 30] [--calls 300]

Each scenario is a stream of observed calls (endpoint, latency) drawn from a fixed profile; the
split, the replay, the cost and the judgement are what `relaycore-policy-train` runs
(`routing.tuning`), and the search is the same Optuna TPE search over the same knobs (without
MLflow). A ratio below 1 means the tuned knobs cost less than the defaults (cost: p99 in ms plus
ten seconds per lost message). The "validation" column is the honest one.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from routing import AdaptiveParams, Observation, tuning  # noqa: E402

Profile = Callable[[random.Random], tuple[str, float]]


def _two_speeds(rng: random.Random) -> tuple[str, float]:
    if rng.random() < 0.5:
        return "fast", rng.expovariate(1 / 0.002)
    return "slow", 0.015 + rng.expovariate(1 / 0.01)


def _three_tiers(rng: random.Random) -> tuple[str, float]:
    name = rng.choice("abc")
    return name, {"a": 0.001, "b": 0.005, "c": 0.05}[name] * rng.lognormvariate(0, 0.3)


def _bimodal(rng: random.Random) -> tuple[str, float]:
    if rng.random() < 0.5:
        return "spiky", 0.2 if rng.random() < 0.05 else 0.001
    return "steady", 0.01


SCENARIOS: dict[str, Profile] = {
    "two speeds": _two_speeds,
    "three tiers": _three_tiers,
    "bimodal": _bimodal,
}


def calls(profile: Profile, count: int, seed: int) -> list[Observation]:
    rng = random.Random(seed)
    return [Observation(i * 0.01, *profile(rng), failed=False) for i in range(count)]


def searched(replay: tuning.Replay, trials: int) -> AdaptiveParams:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(tuning.searched(AdaptiveParams()))
    study.optimize(lambda t: tuning.cost(tuning.evaluate(replay, tuning.suggest(t))), trials)
    return AdaptiveParams(**{**dataclasses.asdict(AdaptiveParams()), **study.best_params})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("| scenario | seed | search: tuned/defaults | validation: tuned/defaults | promoted |")
    print("|---|---|---|---|---|")
    ratios = []
    for name, profile in SCENARIOS.items():
        for seed in range(args.seeds):
            parts = tuning.split(calls(profile, args.calls, seed))
            best = searched(parts.search, args.trials)
            on_search = tuning.cost(tuning.evaluate(parts.search, best)) / tuning.cost(
                tuning.evaluate(parts.search, AdaptiveParams())
            )
            judged = tuning.judge(parts.validation, best, None)
            on_validation = tuning.cost(judged.candidate) / tuning.cost(judged.default)
            ratios.append((on_search, on_validation))
            print(
                f"| {name} | {seed} | {on_search:.3f} | {on_validation:.3f} | {judged.promoted} |"
            )
    print(
        f"\nmedian ratio: search {statistics.median(r[0] for r in ratios):.3f},"
        f" validation {statistics.median(r[1] for r in ratios):.3f}"
    )


if __name__ == "__main__":
    main()
