"""Structured logs: one JSON object per line, the request id on every record, secrets redacted.

`install_redaction()` wraps the log record factory, so every record, whichever handler takes it
(ours, uvicorn's, pytest's), has passwords in URLs and the registered secrets (API_KEY, the
stores' passwords) replaced by `***` before anyone formats it. `configure_logging()` sends the
root logger, uvicorn's loggers included, to one JSON handler on stderr.

The request id comes from `RequestId` (the ASGI middleware): the caller's `X-Request-ID` when it
is a short token, otherwise a new one. It is returned in the response header, put on every record
logged while the request runs, forwarded by RelayCore to endpoints, and given to the Prefect
flow runs the request starts as a `request-id:<id>` tag.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# scheme://user:PASSWORD@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@\s/]+)(?P<tail>@)"
)
_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter strings would blank out ordinary words
_HANDLER_MARK = "_automatrix_json"


def redact(text: str) -> str:
    """`text` with URL passwords and every registered secret replaced by ***."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def register_secrets(values: Iterable[str | None]) -> None:
    """Adds literal secrets (an API key, database passwords) that must never be logged."""
    _SECRETS.update(v for v in values if v and len(v) >= _MIN_SECRET)


def secrets_of(settings: Any) -> list[str]:
    """The API key, the webhook secret and the password of each store URL in `settings`."""
    from sqlalchemy.engine import make_url

    found = [
        key.get_secret_value() if key else None
        for key in (settings.api_key, getattr(settings, "mlflow_webhook_secret", None))
    ]
    for url in (settings.database_url, settings.optuna_storage, settings.mlflow_tracking_uri):
        try:
            found.append(make_url(url).password)  # type: ignore[arg-type]
        except Exception:  # not a SQLAlchemy URL (e.g. http://mlflow:5000): nothing to find
            continue
    return [str(value) for value in found if value]


def install_redaction() -> None:
    """Redacts every record at creation (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_automatrix", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what the caller gave, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.request_id = request_id_var.get()
        return record

    redacting._automatrix = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            body["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            body["exception"] = record.exc_text
        return json.dumps(body, default=str)


def configure_logging(settings: Any) -> None:
    """JSON (or plain text with LOG_FORMAT=text) on stderr for the root and uvicorn loggers."""
    install_redaction()
    register_secrets(secrets_of(settings))
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        if getattr(settings, "log_format", "json") == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
            )
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        # uvicorn silences its access log (no handler, no propagation) unless --access-log: a
        # line per request costs a third of predict's CPU. Prefect's logging setup, which the
        # API imported at start-up until 6334182, used to hide that this line turned it back on.
        wanted = bool(logger.handlers) or logger.propagate
        logger.handlers = []
        logger.propagate = wanted


def new_request_id(given: str | None) -> str:
    """The caller's id when it is a short token (no spaces, no control characters), else a new one."""
    if given and _VALID_ID.match(given):
        return given
    return uuid.uuid4().hex


class RequestId:
    """Pure ASGI middleware: sets the request id for the request's duration and returns it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("automatrix.request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        request_id = new_request_id(given)
        token = request_id_var.set(request_id)
        raw = request_id.encode()

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", raw)]
                status = message["status"]
                if status >= 400:  # successes stay quiet: predict is the hot path
                    self.log.log(
                        logging.WARNING if status >= 500 else logging.INFO,
                        "%s %s -> %d",
                        scope.get("method", "WS"),
                        scope["path"],
                        status,
                    )
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        finally:
            request_id_var.reset(token)
