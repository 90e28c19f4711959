"""The live demo fleet: replica processes (small HTTP services instrumented with prometheus-client
under the OpenTelemetry HTTP names, with the fault contract), the plan and runner that start them
and register them in RelayCore, the load generator that sends traffic through RelayCore, the chaos
schedule, and the fleet's scaler.

Imports: the standard library, starlette, uvicorn, pydantic, prometheus_client and httpx, and
monitoring.healing.scaler for the scaler's contract. A replica process imports only faults.py
and replica.py: never torch, mlflow, prefect, the settings or the API app, so it starts in a
fraction of a second. Nothing here binds or sends outside 127.0.0.1."""
