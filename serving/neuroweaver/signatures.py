"""MLflow webhook signatures: HMAC-SHA256 over "<delivery id>.<timestamp>.<body>", as MLflow signs.

MLflow sends `X-MLflow-Signature: v1,<base64 digest>`, `X-MLflow-Timestamp` (Unix seconds) and
`X-MLflow-Delivery-Id`. A delivery is accepted when its digest matches in constant time and
its timestamp is within `MAX_AGE_S` of now, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict

MAX_AGE_S = 300
WEBHOOK_PATH = "/api/v2/neuroweaver/mlflow-webhook"  # where the API takes deliveries
SIGNATURE_HEADER = "x-mlflow-signature"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The header value MLflow sends for this delivery."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_problem(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    delivery_id: str | None,
    now: float,
) -> str | None:
    """Why the delivery is refused, or None when it is authentic and fresh."""
    if not (signature and timestamp and delivery_id):
        return "an MLflow webhook needs X-MLflow-Signature, X-MLflow-Timestamp and X-MLflow-Delivery-Id"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "X-MLflow-Timestamp is not a Unix time"
    if abs(now - sent_at) > MAX_AGE_S:
        return f"the delivery is more than {MAX_AGE_S} s old or ahead of this clock"
    expected = sign(secret, delivery_id, timestamp, body)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return "the MLflow webhook signature does not match MLFLOW_WEBHOOK_SECRET"
    return None


class RecentDeliveries:
    """The last `keep` delivery ids, so a delivery MLflow retries is acted on once."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, delivery_id: str) -> bool:
        if delivery_id in self._seen:
            return False
        self._seen[delivery_id] = None
        if len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return True


WEBHOOK_NAME = "automatrix-champion-reload"
# What an MLflow server needs to call an API on 127.0.0.1 over plain http (MLflow allows only
# https and public addresses by default); `automatrix up` sets these for its own MLflow server.
MLFLOW_LOCAL_WEBHOOKS = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
}


def ensure_webhook(tracking_uri: str, url: str, secret: str) -> str:
    """Creates (or points and re-keys) the MLflow webhook that tells the API an alias moved.

    Needs an MLflow tracking server; `tracking_uri` is its http(s) URL. Returns the webhook's id.
    """
    from monitoring.neuroweaver import registry

    description = "AutoMatrix serves a moved alias at once"
    return registry.ensure_alias_webhook(tracking_uri, WEBHOOK_NAME, url, secret, description)
