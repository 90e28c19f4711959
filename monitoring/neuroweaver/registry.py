"""The only door to the MLflow registry: register, resolve an alias, load and check a version
(through the local cache of loaded versions in MODEL_SAVE_PATH), move an alias, list models and versions,
the promotion decision and its typed evidence, a version's training data (lineage) and the
retention rule, alias webhooks.

Every MLflow error leaves as one of three: `NotFound` (no such model, version or alias),
`RegistryUnreachable` (the registry failed or did not answer) or `ModelLoadError` (a version that
cannot be loaded or does not answer sensibly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature

from monitoring.config import get_settings
from monitoring.neuroweaver.model import CONFIG_FILE, WEIGHTS_FILE, NeuroWeaverModel
from monitoring.neuroweaver.training import rmse
from monitoring.samples import METRICS

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
EVIDENCE_PREFIX = "promotion."
ALIAS_EVENT: Final = "model_version_alias.created"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
T = TypeVar("T")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]")
ARCHIVED_TAG: Final = "automatrix.archived"
PROFILE_FILE: Final = (
    "reference_profile.json"  # the inputs' training quantiles (monitoring/drift.py)
)
CHALLENGER: Final = "challenger"  # the alias of the version in shadow
SHADOW_TAG: Final = "shadow.status"  # running, promoted, rejected, failed or replaced
SHADOW_SINCE_TAG: Final = "shadow.since"  # when it entered shadow (ISO 8601, UTC)
SHADOW_EVIDENCE_PREFIX: Final = "shadow."
Stage = Literal["champion", "challenger", "rejected"]


class ModelLoadError(RuntimeError):
    """A registered version that cannot be loaded or does not answer sensibly."""


class RegistryUnreachable(RuntimeError):
    """The MLflow registry failed or did not answer; whatever was loaded stays."""


class NotFound(LookupError):
    """No such registered model, version or alias."""


class NoChampion(NotFound):
    """No version carries the alias yet."""


def _call(call: Callable[[MlflowClient], T]) -> T:
    """Runs one registry call on a new client, turning MLflow's errors into ours.

    The client is made inside: making it opens the tracking store, which for a database URI may
    run MLflow's migrations, and a failure there (another process creating the same SQLite
    file) is the registry failing, not a crash."""
    try:
        return call(MlflowClient())
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            raise NotFound(exc.message) from exc
        raise RegistryUnreachable(f"the MLflow registry failed: {exc.message}") from exc
    except Exception as exc:  # connection errors surface as many types
        raise RegistryUnreachable(f"the MLflow registry is unreachable: {exc}") from exc


# --- versions and aliases -----------------------------------------------------------------


def register(model: NeuroWeaverModel, name: str, example: np.ndarray) -> str:
    """Logs `model` under the active MLflow run and registers it; returns the new version."""
    example_frame = pd.DataFrame(example[:5], columns=list(METRICS))
    output = pd.DataFrame({"performance_score": model.predict(example[:5])})
    with tempfile.TemporaryDirectory() as tmp:
        config, weights = model.save(Path(tmp))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"config": str(config), "weights": str(weights)},
            signature=infer_signature(example_frame, output),
            input_example=example_frame,
            registered_model_name=name,
            code_paths=None,
        )
    return str(info.registered_model_version)


def resolve_alias(name: str, alias: str) -> str:
    """The version behind `name@alias`; NoChampion or RegistryUnreachable otherwise."""
    try:
        return str(_call(lambda client: client.get_model_version_by_alias(name, alias)).version)
    except NotFound as exc:
        raise NoChampion(f"no version of {name!r} has the alias @{alias} yet") from exc


def alias_version(name: str, alias: str) -> str | None:
    """The version behind `name@alias`, or None when MLflow has none to give."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def get_version(name: str, version: str) -> ModelVersion:
    """One registered version; NotFound when it does not exist."""
    return _call(lambda client: client.get_model_version(name, version))


def list_versions(name: str) -> list[ModelVersion]:
    """Every version of `name`, newest first; none when the model is not registered."""
    quoted = name.replace("'", "''")
    try:
        found = _call(lambda client: client.search_model_versions(f"name='{quoted}'"))
    except NotFound:
        return []
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def aliases(name: str) -> dict[str, str]:
    """alias -> version (search results do not carry aliases; the registered model does)."""
    model = _call(lambda client: client.get_registered_model(name))
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


@dataclass(frozen=True)
class RegisteredModelSummary:
    """One registered model: its aliases (alias -> version) and its highest version."""

    name: str
    aliases: dict[str, str]
    latest_version: str | None
    description: str | None
    shadow: dict[str, str] | None = None  # the @challenger's shadow.* tags, while there is one


def list_models() -> list[RegisteredModelSummary]:
    """Every registered model in the registry, by name; RegistryUnreachable when it is down."""

    def search(client: MlflowClient) -> list[RegisteredModelSummary]:
        found, token = [], None
        while True:
            page = client.search_registered_models(max_results=100, page_token=token)
            found += [_with_shadow(client, _summary(model)) for model in page]
            token = page.token
            if not token:
                return sorted(found, key=lambda m: m.name)

    return _call(search)


def _summary(model: Any) -> RegisteredModelSummary:
    versions = [int(v.version) for v in (model.latest_versions or [])]
    return RegisteredModelSummary(
        name=model.name,
        aliases={alias: str(version) for alias, version in (model.aliases or {}).items()},
        latest_version=str(max(versions)) if versions else None,
        description=model.description or None,
    )


def _with_shadow(client: MlflowClient, model: RegisteredModelSummary) -> RegisteredModelSummary:
    version = model.aliases.get(CHALLENGER)
    if version is None:
        return model
    tags = client.get_model_version(model.name, version).tags or {}
    shadow = {
        k.removeprefix(SHADOW_EVIDENCE_PREFIX): v
        for k, v in tags.items()
        if k.startswith(SHADOW_EVIDENCE_PREFIX)
    }
    return dataclasses.replace(model, shadow={"version": version, **shadow})


def run_metrics(run_id: str | None) -> dict[str, float]:
    """The metrics of the run that logged a version; none for a deleted run."""
    if not run_id:
        return {}
    try:
        return dict(MlflowClient().get_run(run_id).data.metrics)
    except Exception:  # a deleted run leaves the version without metrics, not without a listing
        return {}


def set_alias(name: str, alias: str, version: str) -> None:
    """Points `name@alias` at `version` and applies the retention rule (a version rolled back to
    loses its archived mark); callers check first that the version exists."""
    _call(lambda client: client.set_registered_model_alias(name, alias, version))
    retain(name)


def move_alias(name: str, alias: str, expected: str, to: str) -> str:
    """Moves `@alias` from `expected` to `to`; refuses (ValueError) if it moved meanwhile."""
    current = resolve_alias(name, alias)
    if current != expected:
        raise ValueError(f"@{alias} is version {current} now, not {expected}: left alone")
    get_version(name, to)  # NotFound for a version that is gone
    set_alias(name, alias, to)
    return current


# --- loading ------------------------------------------------------------------------------


def load_version(name: str, version: str) -> tuple[NeuroWeaverModel, str]:
    """Loads `models:/name/version` (weights only, no code run); the model and its version."""
    model, _ = _download(name, version)
    return model, version


def load_checked(name: str, version: str) -> tuple[NeuroWeaverModel, np.ndarray]:
    """Loads one version (weights only, no code run) and checks it on its own input example."""
    model, local = _download(name, version)
    example = _input_example(local)
    try:
        check_model(model, example)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{name} version {version} failed its check: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(
            f"{name} version {version} failed on its input example: {exc}"
        ) from exc
    return model, example


def _download(name: str, version: str) -> tuple[NeuroWeaverModel, Path]:
    try:
        local = local_copy(name, version)
        model = NeuroWeaverModel.load(_find(local, CONFIG_FILE), _find(local, WEIGHTS_FILE))
    except ModelLoadError:
        raise
    except (MlflowException, OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"{name} version {version} cannot be loaded: {exc}") from exc
    return model, local


def local_copy(name: str, version: str) -> Path:
    """The artifacts of `models:/name/version` in the local cache (MODEL_SAVE_PATH), downloaded
    from the registry the first time. A copy is keyed by the run that logged it as well, so a
    store that was replaced (a new version 1) never meets the old one's files."""
    found = MlflowClient().get_model_version(name, version)
    folder = Path(_SLUG.sub("_", name), f"{version}-{found.run_id or 'no-run'}")
    target = Path(get_settings().model_save_path) / folder
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Downloaded beside its place and renamed into it: a reader never sees half a copy, and of
    # two processes loading the same version at once, the first rename wins.
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(staging))
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _find(root: Path, filename: str) -> Path:
    matches = sorted(root.rglob(filename))
    if not matches:
        raise ModelLoadError(f"{filename} is missing from the model's artifacts")
    return matches[0]


def _input_example(root: Path) -> np.ndarray:
    """The logged input example as an (n, 5) array; a model without one is refused."""
    try:
        model_dir = _find(root, "MLmodel").parent
        frame: Any = Model.load(model_dir).load_input_example(str(model_dir))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"the input example cannot be read: {exc}") from exc
    if frame is None:
        raise ModelLoadError("the model was registered without an input example")
    return np.asarray(frame[list(METRICS)], dtype=np.float64)


def check_model(model: NeuroWeaverModel, example: np.ndarray) -> None:
    """Refuses a model whose answers on its example are not finite scores in [0, 1]."""
    scores = model.predict(example)
    if scores.shape != (len(example),) or not np.all(np.isfinite(scores)):
        raise ModelLoadError("the model's output on its input example is not finite")
    if scores.min() < 0 or scores.max() > 1:
        raise ModelLoadError("the model's output on its input example is outside [0, 1]")


# --- models whose fitted state is a JSON document -----------------------------------------


def register_state(
    name: str,
    state: Mapping[str, Any],
    code: Path,
    filename: str,
    signature: ModelSignature | None = None,
) -> str:
    """Logs `state` as `filename` of a models-from-code pyfunc (`code`) under the active run,
    registers it as `name`, and returns the new version. Loading reads the JSON back: no
    pickle and no code run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_text(json.dumps(state, sort_keys=True))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={"state": str(path)},
            signature=signature,
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def load_state(name: str, version: str, filename: str) -> dict[str, Any]:
    """The JSON state of `models:/name/version`; ModelLoadError when it cannot be read."""
    try:
        data = json.loads(_find(local_copy(name, version), filename).read_text())
    except ModelLoadError:
        raise
    except (MlflowException, OSError, ValueError) as exc:
        raise ModelLoadError(f"{name} version {version} cannot be loaded: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{name} version {version}: {filename} is not a JSON object")
    return data


def record_decision(
    name: str, version: str, promoted: bool, tags: Mapping[str, str], alias: str = "champion"
) -> None:
    """Tags `version` with its promotion evidence and points `@alias` at it when it won; a
    version that lost keeps no alias (the evidence tags say why)."""

    def write(client: MlflowClient) -> None:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if promoted:
            client.set_registered_model_alias(name, alias, version)

    _call(write)
    retain(name)


# --- promotion ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionDecision:
    """The evidence of one promotion decision, stored as `promotion.<field>` version tags."""

    promoted: bool
    new_version: str
    new_rmse: float
    champion_version: str | None
    champion_rmse: float | None
    reason: str

    def tags(self) -> dict[str, str]:
        return {f"{EVIDENCE_PREFIX}{key}": str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> PromotionDecision | None:
        """The decision written by `tags()`; None when any of its fields is missing or unreadable."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = tags.get(f"{EVIDENCE_PREFIX}{field.name}")
            if raw is None:
                return None
            try:
                values[field.name] = _parse_evidence(raw, str(field.type))
            except ValueError:
                return None
        return cls(**values)


def _parse_evidence(raw: str, kind: str) -> Any:
    if "None" in kind and raw in ("", "None"):
        return None
    if kind.startswith("bool"):
        if raw not in ("True", "False"):
            raise ValueError(f"not a bool: {raw!r}")
        return raw == "True"
    if kind.startswith("float"):
        return float(raw)
    return raw


def promotion_evidence(name: str, version: str) -> PromotionDecision | None:
    """The promotion decision recorded on a version; None for a version without one."""
    return PromotionDecision.from_tags(dict(get_version(name, version).tags or {}))


def decide(
    name: str, alias: str, new_version: str, x_test: np.ndarray, y_test: np.ndarray
) -> PromotionDecision:
    """Compares the new version with the champion on the same held-out rows, both reloaded from the registry."""
    new_model, _ = load_version(name, new_version)
    check_model(new_model, x_test[:10])
    new_rmse = rmse(new_model.predict(x_test), y_test)
    champion = alias_version(name, alias)
    if champion is None:
        return PromotionDecision(True, new_version, new_rmse, None, None, "no champion yet")
    try:
        old_model, _ = load_version(name, champion)
        old_rmse = rmse(old_model.predict(x_test), y_test)
    except ModelLoadError as exc:
        return PromotionDecision(
            True, new_version, new_rmse, champion, None, f"champion unusable: {exc}"
        )
    if new_rmse < old_rmse:
        reason = (
            f"test RMSE {new_rmse:.5f} < champion v{champion}'s {old_rmse:.5f} on the same rows"
        )
        return PromotionDecision(True, new_version, new_rmse, champion, old_rmse, reason)
    reason = f"test RMSE {new_rmse:.5f} >= champion v{champion}'s {old_rmse:.5f} on the same rows"
    return PromotionDecision(False, new_version, new_rmse, champion, old_rmse, reason)


def apply(decision: PromotionDecision, name: str, alias: str, shadow: bool = False) -> Stage:
    """Records the evidence on the version and moves an alias: `@alias` for a winner, or, with
    `shadow` and a working champion to beat, `@challenger` (SHADOW_TAG "running"), whose live
    review (flows/shadow_review.py) decides. A version that lost offline gets no alias, so it
    never reaches shadow. Returns where the version went."""
    client = MlflowClient()
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, decision.new_version, key, value)
    stage: Stage = "rejected"
    if decision.promoted and shadow and decision.champion_rmse is not None:
        stage = "challenger"
        start_shadow(client, name, decision.new_version)
    elif decision.promoted:
        stage = "champion"
        client.set_registered_model_alias(name, alias, decision.new_version)
    retain(name)
    return stage


# --- shadow ----------------------------------------------------------------------------------


def start_shadow(client: MlflowClient, name: str, version: str) -> None:
    """Puts `version` in shadow as @challenger, from now; the one it replaces is dropped."""
    previous = alias_version(name, CHALLENGER)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, previous, SHADOW_TAG, "replaced")
    client.set_model_version_tag(name, version, SHADOW_TAG, "running")
    client.set_model_version_tag(name, version, SHADOW_SINCE_TAG, datetime.now(UTC).isoformat())
    client.set_registered_model_alias(name, CHALLENGER, version)


def end_shadow(name: str, version: str, status: str, promote_to: str | None = None) -> None:
    """Ends `version`'s shadow with `status`; `promote_to` moves that alias to it."""

    def write(client: MlflowClient) -> None:
        client.set_model_version_tag(name, version, SHADOW_TAG, status)
        if promote_to is not None:
            client.set_registered_model_alias(name, promote_to, version)
        if alias_version(name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)

    _call(write)
    retain(name)


# --- lineage and retention -----------------------------------------------------------------


def digest_of(frame: pd.DataFrame) -> str:
    """A short, stable digest of a frame's content (its rows as JSON records)."""
    return hashlib.sha256(frame.to_json(orient="records", date_format="iso").encode()).hexdigest()[
        :16
    ]


def log_training_data(
    frame: pd.DataFrame, source: Mapping[str, str], name: str, targets: str | None = None
) -> str:
    """Logs `frame` as the active run's training dataset (MLflow's *Datasets* panel): `source`
    says where it came from; the row count, digest and, where the frame has them, the window
    (`timestamp`) and services are added. Returns the digest."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import from_pandas

    digest = digest_of(frame)
    tags = {**source, **frame_window(frame), "rows": str(len(frame)), "sha256": digest}
    dataset = from_pandas(
        frame, source=CodeDatasetSource(tags), targets=targets, name=name, digest=digest
    )
    mlflow.log_input(dataset, context="training")
    return digest


def log_reference_profile(profile: Mapping[str, Any]) -> None:
    """Logs the inputs' reference profile (monitoring/drift.py) as the active run's PROFILE_FILE."""
    mlflow.log_dict(dict(profile), PROFILE_FILE)


def reference_profile(run_id: str | None) -> dict[str, Any]:
    """The reference profile a version's run logged; NotFound when it logged none."""
    if not run_id:
        raise NotFound("the version has no run, so no reference profile")
    try:
        found = mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_FILE}")
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            raise NotFound(f"run {run_id} logged no {PROFILE_FILE}") from exc
        raise RegistryUnreachable(f"the MLflow store failed: {exc.message}") from exc
    except OSError as exc:  # a local artifact store raises the file's own error
        raise NotFound(f"run {run_id} logged no {PROFILE_FILE}: {exc}") from exc
    return dict(found)


def set_version_tags(name: str, version: str, tags: Mapping[str, str]) -> None:
    """Sets `tags` on one version."""

    def write(client: MlflowClient) -> None:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)

    _call(write)


def frame_window(frame: pd.DataFrame) -> dict[str, str]:
    """`since`/`until` of a `timestamp` column and the sorted `services`, for those it has."""
    found: dict[str, str] = {}
    if "timestamp" in frame.columns and len(frame):
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        found |= {"since": stamps.min().isoformat(), "until": stamps.max().isoformat()}
    if "service" in frame.columns:
        found["services"] = ",".join(sorted(map(str, frame["service"].unique())))
    return found


def retire_unaliased(name: str, keep: int) -> list[str]:
    """The retention rule: versions older than the newest `keep` that hold no alias are tagged
    `automatrix.archived=true` (nothing is deleted, so a rollback to one still works); a version
    that holds an alias again loses the tag. Returns the versions archived by this call."""

    held = set(aliases(name).values())
    marks, unmarks = [], []
    for rank, version in enumerate(list_versions(name)):
        marked = version.tags.get(ARCHIVED_TAG) == "true"
        kept = str(version.version) in held or rank < keep
        if kept and marked:
            unmarks.append(str(version.version))
        elif not kept and not marked:
            marks.append(str(version.version))

    def write(client: MlflowClient) -> None:
        for version in unmarks:
            client.delete_model_version_tag(name, version, ARCHIVED_TAG)
        for version in marks:
            client.set_model_version_tag(name, version, ARCHIVED_TAG, "true")

    _call(write)
    return marks


def retain(name: str) -> list[str]:
    """The retention rule with the configured MODEL_KEEP_VERSIONS; run after every alias move."""
    return retire_unaliased(name, get_settings().model_keep_versions)


# --- webhooks -----------------------------------------------------------------------------


def ensure_alias_webhook(
    tracking_uri: str, webhook_name: str, url: str, secret: str, description: str
) -> str:
    """Creates (or points and re-keys) the webhook MLflow calls when an alias moves; its id.

    Needs an MLflow tracking server (the server sends webhooks, not a client writing to the
    database); `tracking_uri` is its http(s) URL.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    existing = next((hook for hook in client.list_webhooks() if hook.name == webhook_name), None)
    if existing is None:
        created = client.create_webhook(
            webhook_name, url, [ALIAS_EVENT], secret=secret, description=description
        )
        return str(created.webhook_id)
    client.update_webhook(
        existing.webhook_id, url=url, events=[ALIAS_EVENT], secret=secret, status="ACTIVE"
    )
    return str(existing.webhook_id)
