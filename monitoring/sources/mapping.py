"""The Prometheus mapping file: one PromQL template per metric, and the labels that name the
service and the replica (deploy/prometheus-mapping.yaml holds the documented defaults).

Every problem found here is a `MappingError` whose message starts with `file:line:`, so the
command line can name the line. The PromQL itself is checked by the server
(`prometheus.check_queries`), since only Prometheus' own parser knows its grammar.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from monitoring.samples import METRICS

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-mapping.yaml"
PLACEHOLDERS = ("by", "window", "memory_limit")
TOP_KEYS = ("labels", "rate_window", "memory_limit_bytes", "metrics")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class MappingError(ValueError):
    """The mapping file is wrong; the message names the file and the line."""


@dataclass(frozen=True)
class Mapping:
    path: Path
    service_label: str
    replica_label: str
    rate_window: timedelta
    memory_limit_bytes: float
    templates: dict[str, str]
    lines: dict[str, int]  # metric -> the line of its key, for messages

    def query(self, metric: str, step: timedelta) -> str:
        """The metric's PromQL for a query at `step`: the rate window is never below the step,
        so that a coarse backfill skips no sample between two instants."""
        window = max(self.rate_window, step)
        return string.Template(self.templates[metric]).substitute(
            by=f"{self.service_label}, {self.replica_label}",
            window=f"{int(window.total_seconds())}s",
            memory_limit=format(self.memory_limit_bytes, ".17g"),
        )

    def where(self, metric: str) -> str:
        return f"{self.path}:{self.lines[metric]}"


def load(path: Path | None = None) -> Mapping:
    """The mapping at `path` (the repository's default when None), checked line by line."""
    path = path or DEFAULT_PATH
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise MappingError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    return _parse(path, root)


def _parse(path: Path, root: Any) -> Mapping:
    top = _entries(path, root, "the file")
    for key, (node, _value) in top.items():
        if key not in TOP_KEYS:
            raise MappingError(
                f"{path}:{_line(node)}: unknown key {key!r} (expected {', '.join(TOP_KEYS)})"
            )
    for key in ("labels", "metrics"):
        if key not in top:
            raise MappingError(f"{path}:1: the {key!r} section is missing")
    service, replica = _labels(path, top["labels"])
    templates, lines = _metrics(path, top["metrics"], (service, replica))
    return Mapping(
        path=path,
        service_label=service,
        replica_label=replica,
        rate_window=_window(path, top.get("rate_window")),
        memory_limit_bytes=_memory(path, top.get("memory_limit_bytes")),
        templates=templates,
        lines=lines,
    )


def _entries(path: Path, node: Any, what: str) -> dict[str, tuple[Any, Any]]:
    """A YAML mapping's entries by key: (key node, value node)."""
    if not isinstance(node, yaml.MappingNode):
        raise MappingError(f"{path}:{_line(node)}: {what} must be a mapping of names to values")
    return {str(key.value): (key, value) for key, value in node.value}


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1 if node is not None else 1


def _labels(path: Path, entry: tuple[Any, Any]) -> tuple[str, str]:
    key_node, node = entry
    labels = _entries(path, node, "labels")
    found = []
    for name in ("service", "replica"):
        if name not in labels:
            raise MappingError(
                f"{path}:{_line(key_node)}: labels: the {name!r} label is missing "
                "(the Prometheus label that names the " + name + ")"
            )
        label_key, value = labels[name]
        if not isinstance(value, yaml.ScalarNode) or not _LABEL.match(str(value.value)):
            raise MappingError(
                f"{path}:{_line(label_key)}: labels.{name} must be a Prometheus label name"
            )
        found.append(str(value.value))
    return found[0], found[1]


def _metrics(
    path: Path, entry: tuple[Any, Any], labels: tuple[str, str]
) -> tuple[dict[str, str], dict[str, int]]:
    key_node, node = entry
    metrics = _entries(path, node, "metrics")
    for name, (name_node, _) in metrics.items():
        if name not in METRICS:
            raise MappingError(
                f"{path}:{_line(name_node)}: unknown metric {name!r} "
                f"(expected {', '.join(METRICS)})"
            )
    absent = [m for m in METRICS if m not in metrics]
    if absent:
        raise MappingError(
            f"{path}:{_line(key_node)}: metrics: no template for {', '.join(absent)}"
        )
    templates = {m: _template(path, m, *metrics[m], labels) for m in METRICS}
    return templates, {m: _line(metrics[m][0]) for m in METRICS}


def _template(path: Path, metric: str, key: Any, node: Any, labels: tuple[str, str]) -> str:
    where = f"{path}:{_line(key)}: {metric}"
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise MappingError(f"{where}: expected a PromQL template")
    text = str(node.value).strip()
    names = {
        match.group("named") or match.group("braced")
        for match in string.Template.pattern.finditer(text)
        if not match.group("escaped")
    }
    unknown = sorted(n for n in names if n not in PLACEHOLDERS)
    if unknown or None in names:
        raise MappingError(
            f"{where}: unknown placeholder ${(unknown or ['?'])[0]} "
            f"(known: {', '.join('$' + p for p in PLACEHOLDERS)})"
        )
    if "by" not in names and not all(label in text for label in labels):
        raise MappingError(
            f"{where}: the query keeps neither $by nor the labels {labels[0]} and {labels[1]}, "
            "so its series would not say which service and replica they are"
        )
    return text


def _window(path: Path, entry: tuple[Any, Any] | None) -> timedelta:
    if entry is None:
        return timedelta(minutes=1)
    key, node = entry
    match = _DURATION.match(str(getattr(node, "value", "")))
    if not match or not any(match.groups()):
        raise MappingError(f"{path}:{_line(key)}: rate_window must be a duration such as 1m or 90s")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _memory(path: Path, entry: tuple[Any, Any] | None) -> float:
    if entry is None:
        return float(2**30)
    key, node = entry
    try:
        value = float(str(getattr(node, "value", "")))
    except ValueError:
        value = 0.0
    if not value > 0:
        raise MappingError(f"{path}:{_line(key)}: memory_limit_bytes must be a positive number")
    return value
