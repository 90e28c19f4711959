"""MLflow models-from-code entry of `relaycore-policy`: the adaptive policy's knobs.

`mlflow.pyfunc.load_model("models:/relaycore-policy@champion")` runs this file; `predict`
ignores its input and answers one row of knobs (the JSON state, nothing unpickled). The API
reads the state itself (flows/relaycore_policy.py:load_version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class RelayPolicyPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        self.state = json.loads(Path(context.artifacts["state"]).read_text())

    def predict(
        self, context: Any, model_input: Any, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return pd.DataFrame([self.state])


mlflow.models.set_model(RelayPolicyPyfunc())
