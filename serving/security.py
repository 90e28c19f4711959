"""The API key: required on every mutating request (POST, PUT, PATCH, DELETE) when one is set.

`create_app` installs `require_api_key` as an app-wide dependency, so every router included
later (RelayCore, the orchestrator) is covered without doing anything.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, HTTPException
from starlette.requests import HTTPConnection

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def require_api_key(
    connection: HTTPConnection,
    x_api_key: Annotated[str | None, Header(description="the API_KEY, on mutating requests when one is set")] = None,
    authorization: Annotated[str | None, Header(description="or `Bearer <API_KEY>`")] = None,
) -> None:
    """401 unless the request only reads, no key is configured, or the key matches in constant time."""
    if connection.scope.get("method") not in MUTATING:
        return
    expected = connection.app.state.automatrix.settings.api_key
    if expected is None or not expected.get_secret_value():
        return
    given = x_api_key or _bearer(authorization)
    if given is None:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
