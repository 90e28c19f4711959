"""The served capacity forecaster: `capacity-forecaster@champion`'s fitted state, kept current.

The API and the orchestration flow read the per-series choices from here instead of running the
backtest on every request. With no state at all, a forecast chooses its method on the spot, as
before training.
"""

from __future__ import annotations

from monitoring.assess import capacity_model
from monitoring.assess.capacity_model import MODEL_NAME, FittedForecaster
from serving.orchestrator.holder import AliasHolder

ForecasterHolder = AliasHolder[FittedForecaster]


def forecaster_holder() -> ForecasterHolder:
    return AliasHolder(MODEL_NAME, capacity_model.load_version, "forecasts choose on the spot")
