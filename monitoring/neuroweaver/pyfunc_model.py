"""MLflow models-from-code entry: the registered model's code, so that nothing is unpickled.

`mlflow models serve -m models:/neuroweaver@champion --env-manager local` runs this file; it
rebuilds the network from `config.json` and loads `weights.pt` with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from monitoring.neuroweaver.model import NeuroWeaverModel
from monitoring.samples import METRICS


class NeuroWeaverPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        self.model = NeuroWeaverModel.load(Path(artifacts["config"]), Path(artifacts["weights"]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        scores = self.model.predict(model_input[list(METRICS)].to_numpy(dtype="float64"))
        return pd.DataFrame({"performance_score": scores})


mlflow.models.set_model(NeuroWeaverPyfunc())
