"""The served failure risk: `failure-risk@champion`'s state, kept current.

The insights and the on-demand cycle read the learned risk from here. With no state at all,
the hand-set rule answers.
"""

from __future__ import annotations

from monitoring.assess import failure_model
from monitoring.assess.failure_model import MODEL_NAME, RiskModel
from serving.orchestrator.holder import AliasHolder

RiskHolder = AliasHolder[RiskModel]


def load_risk(version: str) -> RiskModel:
    return RiskModel(failure_model.load_version(version), version)


def risk_holder() -> RiskHolder:
    return AliasHolder(MODEL_NAME, load_risk, "the hand-set rule")
