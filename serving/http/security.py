"""The API key: required on every mutating request (POST, PUT, PATCH, DELETE) when one is set.

`create_app` installs `require_api_key` as an app-wide dependency, so every router included
later (RelayCore, the orchestrator) is covered without doing anything. The raw predict path
(serving/neuroweaver/predict.py) runs the same check through `key_problem`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, HTTPException
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from serving.neuroweaver.signatures import WEBHOOK_PATH

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Paths whose callers cannot send the key (MLflow's webhooks): a signed request is checked by
# its handler; an unsigned one needs the key as usual.
SIGNED_PATHS = frozenset({WEBHOOK_PATH})


async def require_api_key(
    connection: HTTPConnection,
    x_api_key: Annotated[
        str | None, Header(description="the API_KEY, on mutating requests when one is set")
    ] = None,
    authorization: Annotated[str | None, Header(description="or `Bearer <API_KEY>`")] = None,
) -> None:
    """401 unless the request only reads, no key is configured, or the key matches in constant time.

    Async on purpose: a plain `def` dependency costs every request a hop to the thread pool.
    """
    if connection.scope.get("path") in SIGNED_PATHS and "x-mlflow-signature" in connection.headers:
        return  # the handler checks the MLflow signature instead
    expected = connection.app.state.automatrix.settings.api_key
    problem = key_problem(connection.scope.get("method"), expected, x_api_key, authorization)
    if problem is not None:
        raise HTTPException(401, problem, headers=CHALLENGE)


def key_problem(
    method: str | None, expected: SecretStr | None, x_api_key: str | None, authorization: str | None
) -> str | None:
    """Why the request is refused, or None when it may go on."""
    if method not in MUTATING or expected is None or not expected.get_secret_value():
        return None
    given = x_api_key or _bearer(authorization)
    if given is None:
        return "missing API key: send it in the X-API-Key header"
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        return "invalid API key"
    return None


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
