"""Schemathesis against the app's own OpenAPI schema: shared by the CI test and benchmarks/fuzz_api.py.

Each operation gets `max_examples` generated requests (valid and invalid bodies, parameters and
headers). A response fails when it is a 5xx or does not match the schema documented for its status
code and content type. Left out: adding RelayCore endpoints (a fuzzed URL would send traffic off
this machine) and the server-sent-event stream (it never ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXCLUDED = {("POST", "/api/v2/relaycore/endpoints")}


@dataclass
class FuzzReport:
    operations: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def fuzz(
    base_url: str, max_examples: int, seed: int = 0, headers: dict[str, str] | None = None
) -> FuzzReport:
    """Runs every operation of `base_url`/openapi.json; returns what it saw and what failed."""
    import httpx
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, given
    from schemathesis.checks import content_type_conformance, response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    documented = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["paths"]
    report = FuzzReport()
    checks = [response_schema_conformance, content_type_conformance]
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        report.operations += 1
        settings = hypothesis.settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=seed == 0,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        answers = set(documented[operation.path][operation.method.lower()].get("responses", {}))
        settings(
            given(case=operation.as_strategy())(
                _runner(operation, base_url, headers, checks, report, answers)
            )
        )()
    return report


def _runner(
    operation: Any,
    base_url: str,
    headers: dict[str, str] | None,
    checks: list[Any],
    report: FuzzReport,
    answers: set[str],
) -> Any:
    """One generated request: a 500, or a 5xx the operation does not document, is a failure;
    a documented 503 (a dependency down, routing stopped) is the API doing its job."""
    name = f"{operation.method.upper()} {operation.path}"

    def run(case: Any) -> None:
        if operation.path == "/api/v2/ecosystem/live":  # one snapshot, never the endless stream
            case.query = {"stream": "false"}
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "accept"}
        report.requests += 1
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
        except Exception as exc:
            report.failures.append(f"{name}: {exc!r}"[:500])
            return
        status = response.status_code
        report.statuses[status] = report.statuses.get(status, 0) + 1
        if status == 500 or (status >= 500 and str(status) not in answers):
            report.failures.append(
                f"{name} -> {status}: {response.text[:500]}\n{case.as_curl_command()}"
            )
            return
        try:
            case.validate_response(response, checks=checks)
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # schemathesis raises one error listing every failed check
            report.failures.append(f"{name} -> {response.status_code}: {exc}"[:1500])

    return run
