"""MLflow models-from-code entry of `failure-risk`: calibrated risk from its JSON state.

`mlflow.pyfunc.load_model("models:/failure-risk@champion")` runs this file. `predict` takes one
row per moment with the columns of `failure_model.FEATURES` and answers `risk` (the calibrated
probability of an SLO breach or incident within the horizon) and `alarm` (risk at or above the
threshold chosen on validation). Nothing is unpickled: the trees are JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from monitoring.assess.failure_model import FEATURES, FittedRisk


class FailureRiskPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        self.state = FittedRisk.from_dict(json.loads(Path(context.artifacts["state"]).read_text()))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        risk = self.state.predict(model_input[list(FEATURES)].to_numpy(np.float64))
        return pd.DataFrame({"risk": risk, "alarm": risk >= self.state.threshold})


mlflow.models.set_model(FailureRiskPyfunc())
