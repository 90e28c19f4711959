"""Why a message was not delivered; each error carries the HTTP status the API answers with."""

from __future__ import annotations


class RoutingError(Exception):
    http_status = 500

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Seconds the client should wait before trying again, for a Retry-After header.
        self.retry_after = retry_after


class QueueFull(RoutingError):
    """Every endpoint is busy and the wait queue is full (or this message was displaced)."""

    http_status = 429


class NoEndpointAvailable(RoutingError):
    """No endpoint is registered, or every one has an open breaker."""

    http_status = 503


class NoEndpointForService(NoEndpointAvailable):
    """The message names a service for which no endpoint is registered (503: one may be added)."""


class RouterStopped(RoutingError):
    """Routing was stopped; new messages are refused."""

    http_status = 503


class AllAttemptsFailed(RoutingError):
    """Endpoints were tried and none answered successfully."""

    http_status = 502

    def __init__(
        self,
        message: str,
        attempts: int,
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error


class DeadlineExpired(RoutingError):
    """The message's deadline passed before an endpoint answered; it was never sent if queued."""

    http_status = 504


class UnknownEndpoint(RoutingError, KeyError):
    """No endpoint is registered under that name."""

    http_status = 404

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return self.message


class DuplicateEndpoint(RoutingError):
    """An endpoint with that name is already registered."""

    http_status = 409
