"""Start-up freezes the heap only once everything the app loads at start-up is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import relaycore as support

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter: this test's own process has frozen its heap many times over.
PROBE = """
import gc, json, sys
from fastapi.testclient import TestClient
from serving.app import create_app

with TestClient(create_app()) as client:
    client.get("/api/v2/relaycore/status").raise_for_status()
    young = {id(o) for o in gc.get_objects()}
    store = sys.modules["monitoring.store.engine"]
    print(json.dumps({"store_module_frozen": id(store) not in young,
                      "prefect_loaded": "prefect" in sys.modules,
                      "walked_by_a_full_pass": len(gc.get_objects(2))}))
"""


def test_start_api_loads_the_store_before_the_heap_is_frozen_and_prefect_not_at_all(
    tmp_path: Path, empty_mlflow_db: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("API_KEY", "RELAYCORE_ENDPOINTS", "ENVIRONMENT")
    }
    env |= support.relay_environment(tmp_path, empty_mlflow_db) | {"PYTHONPATH": str(ROOT)}

    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # Loaded after the freeze, Prefect's modules sat in the oldest generation: each full
    # collection walked ~70,000 objects and paused RelayCore's loop for 50-60 ms. The store
    # no longer imports Prefect; the first training freezes it (serving/neuroweaver/training.py).
    assert found["store_module_frozen"] and not found["prefect_loaded"], found
    assert found["walked_by_a_full_pass"] < 30_000, found


FIRST_TRAINING_PROBE = """
import gc, json, sys
from serving.neuroweaver import training

training.freeze_prefect()
young = {id(o) for o in gc.get_objects()}
print(json.dumps({"prefect_frozen": id(sys.modules["prefect"]) not in young,
                  "flow_frozen": id(sys.modules["flows.train"]) not in young}))
"""


def test_start_first_training_freezes_what_prefect_loads() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_TRAINING_PROBE],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["prefect_frozen"] and found["flow_frozen"], found
