"""The `automatrix` command: up, ingest, train, serve, detect, forecast, scale-replay and fleet."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer
from pydantic import ValidationError

from serving.settings import ServingSettings, get_settings

app = typer.Typer(help="AutoMatrix: AI operations for service metrics.", no_args_is_help=True)
WORKER_HEALTHCHECK_S = 60  # how long uvicorn's supervisor waits for a worker's answer


def load_settings() -> ServingSettings:
    """The settings, or a message naming each bad variable and a non-zero exit."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            typer.echo(f"invalid setting {variable}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def up(
    seed: Annotated[
        bool, typer.Option(help="seed simulated metrics and train on an empty store")
    ] = True,
    fleet: Annotated[
        bool,
        typer.Option(help="run the demo fleet (docs/fleet.md), scraped and healed (auto)"),
    ] = True,
    chaos: Annotated[
        bool, typer.Option(help="the demo fleet's chaos schedule (a fault now and then)")
    ] = True,
) -> None:
    """Start Prefect (server, deployments, worker), the MLflow UI, the API and the demo fleet;
    Ctrl-C stops all."""
    from serving.cli.platform import run_platform

    run_platform(load_settings(), seed=seed, fleet=fleet, chaos=chaos)


@app.command()
def ingest(
    source: Annotated[
        str | None,
        typer.Option(help="simulator, prometheus, csv or scrape; default: INGEST_SOURCE's choice"),
    ] = None,
    start: Annotated[
        datetime | None, typer.Option(help="window start (UTC); default: since the last run")
    ] = None,
    end: Annotated[datetime | None, typer.Option(help="window end (UTC); default: now")] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="CSV file for --source csv")
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus base URL; default: PROMETHEUS_URL")
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="PromQL mapping file; default: PROMETHEUS_MAPPING")
    ] = None,
    step: Annotated[int, typer.Option(min=1, help="seconds between Prometheus points")] = 60,
) -> None:
    """Run the ingestion flow once; a start and end backfill that window."""
    settings = load_settings()
    chosen = source or settings.scheduled_source()
    if chosen not in ("simulator", "prometheus", "csv", "scrape"):
        _fail(
            f"--source must be simulator, prometheus or csv (a window), or scrape (now), not {chosen!r}"
        )
    url = prometheus_url or settings.prometheus_url or "http://127.0.0.1:9090"
    if chosen == "prometheus":
        _check_mapping(url, mapping or settings.prometheus_mapping)
    from flows.ingest import ingest_flow

    result = _run(
        lambda: ingest_flow(
            source=cast(Any, chosen),
            start=_utc(start),
            end=_utc(end),
            csv_path=str(csv_path) if csv_path else None,
            prometheus_url=url,
            mapping_path=str(mapping) if mapping else None,
            step_s=step,
        )
    )
    typer.echo(json.dumps(result, indent=2))


def _check_mapping(url: str, path: Path | None) -> None:
    """A bad mapping file exits 2 with each problem as `file:line: ...`; the PromQL is parsed
    by the Prometheus server (its query endpoint). An unreachable server is the flow's to retry."""
    import httpx

    from monitoring.sources import mapping, prometheus

    try:
        rules = mapping.load(path)
        with httpx.Client(timeout=30) as client:
            problems = prometheus.check_queries(url, rules, client)
    except mapping.MappingError as exc:
        _fail(str(exc))
    except prometheus.PrometheusError:
        return
    if problems:
        _fail("\n".join(problems))


MODELS = ("neuroweaver", "capacity-forecaster", "failure-risk", "relaycore-policy")


@app.command()
def train(
    model: Annotated[str, typer.Option(help="the model to train: " + ", ".join(MODELS))] = (
        "neuroweaver"
    ),
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials")] = 20,
    timeout: Annotated[float, typer.Option(min=1, help="search time limit in seconds")] = 480.0,
    window_days: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="days of history to train on (7; 21 for capacity-forecaster, 14 for failure-risk)",
        ),
    ] = None,
    max_epochs: Annotated[int, typer.Option(min=1, help="largest epoch count searched")] = 20,
    data: Annotated[
        Path | None, typer.Option(help="JSON file of labelled rows to train on")
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="join this Optuna study (scale-out)")
    ] = None,
) -> None:
    """Run one model's training flow once (the flow its deployment runs): register, promote if better."""
    if not load_settings().enable_ml_training:
        _fail("training is disabled (ENABLE_ML_TRAINING=false); set it to true to train")
    if model not in MODELS:
        _fail(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    # Without --window-days each flow keeps its own default (7 days, 21 for capacity).
    window: dict[str, Any] = {} if window_days is None else {"window_days": window_days}
    if model == "failure-risk":
        _train_failure_risk(window, data)
        return
    if model == "relaycore-policy":
        _train_relaycore(trials, timeout, window_days, data)
        return
    if model == "capacity-forecaster":
        if data is not None:
            _fail("--data trains neuroweaver only; capacity-forecaster learns from the store")
        from flows.train_capacity import train_capacity_flow

        result = _run(lambda: train_capacity_flow(**window))
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    rows = _read_rows(data) if data else None
    from flows.train import train_flow

    result = _run(
        lambda: train_flow(
            trials=trials,
            timeout_s=timeout,
            **window,
            max_epochs=max_epochs,
            data=rows,
            study_name=study_name,
        )
    )
    typer.echo(json.dumps(result, indent=2, default=str))


def _train_failure_risk(window: dict[str, Any], data: Path | None) -> None:
    if data is not None:
        _fail("--data trains neuroweaver only; failure-risk learns from the store")
    from flows.train_failure import train_failure_flow

    result = _run(lambda: train_failure_flow(**window))
    typer.echo(json.dumps(result, indent=2, default=str))


def _train_relaycore(
    trials: int, timeout: float, window_days: float | None, data: Path | None
) -> None:
    if data is not None or window_days is not None:
        _fail(
            "relaycore-policy replays the calls the API observed; it takes no --data or --window-days"
        )
    from flows.train_relaycore import train_relaycore_flow

    result = _run(lambda: train_relaycore_flow(trials=trials, timeout_s=timeout))
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="log every request (costs a third of predict's CPU)")
    ] = False,
) -> None:
    """Start the API alone."""
    import shutil

    import uvicorn

    settings = load_settings()
    made = _metrics_directory(workers)
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.api_port,
            workers=workers,
            log_level="info",
            access_log=access_log or settings.debug,
            # A worker answers the supervisor's ping from a thread while start-up imports torch
            # and MLflow; on a loaded 2-core host that can take longer than uvicorn's 5 s, and
            # the supervisor would kill and respawn workers that were only starting.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            # X-Forwarded-For is the app's to read, from TRUSTED_PROXIES only (ratelimit.py).
            proxy_headers=False,
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _metrics_directory(workers: int) -> Path | None:
    """Prometheus multiprocess mode for several workers: PROMETHEUS_MULTIPROC_DIR, emptied of the
    last run's files, or a new folder this returns (for removal at exit) when it is unset."""
    import os
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers == 1 and not given:
        return None
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    made = Path(tempfile.mkdtemp(prefix="automatrix-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)  # the workers inherit it
    return made


@app.command()
def detect(
    inputs: Annotated[list[Path], typer.Argument(help="timestamp,value CSV files")],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="where DIR/<name>.csv is written")
    ],
) -> None:
    """Anomaly scores in [0, 1] for each row, computed from that row and the ones before it only."""
    from monitoring.anomaly.files import DetectInputError, detect_files

    try:
        written = detect_files(list(inputs), output_dir)
    except DetectInputError as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(str(path))


@app.command()
def forecast(
    inputs: Annotated[list[Path], typer.Argument(help="timestamp,value CSV files")],
    horizon: Annotated[int, typer.Option(min=1, help="steps ahead (the input's median step)")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="where DIR/<name> is written")],
) -> None:
    """Forecast each series with the method its own backtest chose, with 80% and 95% intervals."""
    from serving.cli.forecast import ForecastInputError, forecast_files, output_path

    try:
        forecast_files(list(inputs), horizon, output_dir)
    except ForecastInputError as exc:
        _fail(str(exc))
    for path in inputs:
        typer.echo(str(output_path(path, output_dir)))


@app.command("scale-replay")
def scale_replay(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="timestamp,value demand CSV")],
    capacity_per_replica: Annotated[
        float, typer.Option(help="demand one replica serves at full utilisation")
    ],
    target_utilisation: Annotated[float, typer.Option(help="the HPA's target, in (0, 1]")],
    startup_minutes: Annotated[float, typer.Option(help="minutes before a new replica serves")],
    price_per_replica_hour: Annotated[
        float | None, typer.Option(help="turns replica-minutes into cost")
    ] = None,
) -> None:
    """Replay the HPA rule and the predictive scaler on a demand series; prints one JSON object."""
    from serving.cli.scale_replay import ReplayInputError, scale_replay_file

    try:
        result = scale_replay_file(
            input_path,
            capacity_per_replica,
            target_utilisation,
            startup_minutes,
            price_per_replica_hour,
        )
    except ReplayInputError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result))


@app.command()
def fleet(
    services: Annotated[int, typer.Option(min=1, max=8, help="demo services")] = 2,
    replicas: Annotated[int, typer.Option(min=1, max=10, help="replicas per service")] = 3,
    rate: Annotated[
        float, typer.Option(min=0.1, max=200, help="messages/s through RelayCore")
    ] = 20.0,
    chaos: Annotated[bool, typer.Option(help="a fault into one replica every interval")] = True,
    chaos_interval: Annotated[
        float, typer.Option(min=30, max=86400, help="seconds between chaos faults")
    ] = 180.0,
    chaos_fault: Annotated[float, typer.Option(min=5, help="seconds each fault lasts")] = 60.0,
    duration: Annotated[
        float | None, typer.Option(min=1, help="seconds to run; default: until Ctrl-C")
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="default http://127.0.0.1:API_PORT")] = None,
    base_port: Annotated[
        int | None, typer.Option(min=1024, max=65000, help="first port; default: free ports")
    ] = None,
    targets_file: Annotated[
        Path | None, typer.Option(help="write Prometheus file_sd targets here")
    ] = None,
    scale_port: Annotated[
        int | None, typer.Option(help="serve the scaling webhook at 127.0.0.1:PORT/scale")
    ] = None,
) -> None:
    """Start the demo fleet against a running API: replicas in RelayCore, load and chaos."""
    from serving.fleet.chaos import ChaosConfig
    from serving.fleet.runner import FleetFailed, FleetOptions, start_fleet

    settings = load_settings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        options = FleetOptions(
            api_url=api_url or f"http://127.0.0.1:{settings.api_port}",
            api_key=key,
            services=services,
            replicas=replicas,
            rate=rate,
            duration_s=duration,
            chaos=ChaosConfig(interval_s=chaos_interval, fault_s=chaos_fault) if chaos else None,
            base_port=base_port,
            targets_file=targets_file,
            scale_port=scale_port,
        )
        start_fleet(options)
    except ValueError as exc:
        _fail(str(exc))
    except FleetFailed as exc:
        _fail(str(exc), code=1)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        body = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"{path}: {exc}")
    rows = body.get("data") if isinstance(body, dict) else body
    if not isinstance(rows, list):
        _fail(f'{path}: expected a list of rows or {{"data": [...]}}')
    return rows


def _utc(moment: datetime | None) -> datetime | None:
    from datetime import UTC

    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _run(call: Any) -> Any:
    """Runs a flow; a failure becomes a one-line message and exit code 1."""
    try:
        return call()
    except ValidationError as exc:
        _fail(f"invalid parameter: {exc.errors()[0]['msg']}")
    except Exception as exc:  # the flow already logged the traceback
        _fail(f"{type(exc).__name__}: {exc}", code=1)


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


if __name__ == "__main__":
    app()
