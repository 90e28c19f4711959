"""MLflow models-from-code entry of `capacity-forecaster`: forecasts from its fitted state.

`mlflow.pyfunc.load_model("models:/capacity-forecaster@champion")` runs this file. `predict`
takes long-form history (`service`, `metric`, `timestamp` as naive UTC datetimes, which is what
MLflow's schema accepts, and `value`) and the horizon in 5-minute
steps (`params={"horizon": N}`, one day by default), and answers one row per future step of each
series: `service`, `metric`, `timestamp`, `forecast`, `lo_80`, `hi_80`, `lo_95`, `hi_95`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from monitoring.assess.capacity_model import FittedForecaster
from monitoring.assess.forecasting import forecast_capacity


class CapacityForecasterPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        state = json.loads(Path(context.artifacts["state"]).read_text())
        self.state = FittedForecaster.from_dict(state)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", self.state.horizon))
        frames = []
        for (service, metric), rows in model_input.groupby(["service", "metric"], sort=True):
            index = pd.to_datetime(rows["timestamp"], utc=True)
            series = pd.Series(rows["value"].astype(float).to_numpy(), index=index).sort_index()
            choice = self.state.choice_for(str(service), str(metric))
            forecast = forecast_capacity(series, horizon, choice=choice)
            frame = forecast.to_frame().reset_index(names="timestamp")
            frames.append(frame.assign(service=service, metric=metric))
        columns = {"mean": "forecast", "lo-80": "lo_80", "hi-80": "hi_80"}
        columns |= {"lo-95": "lo_95", "hi-95": "hi_95"}
        return pd.concat(frames, ignore_index=True).rename(columns=columns)


mlflow.models.set_model(CapacityForecasterPyfunc())
