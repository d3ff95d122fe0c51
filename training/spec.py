"""Declarative model specs (``training/specs/<name>.toml``): all a new model needs besides
its dataset and its expectation suite."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.bundle import is_model_name, model_name_problem
from training.config import DATA_DIR, EXPECTATIONS_DIR, SPECS_DIR

TASKS = ("regression", "binary")
SPLITS = ("chronological", "stratified", "random")
# The answer kind each task serves, and the held-out metrics training computes for it.
OUTPUT_KIND = {"regression": "banded_regression", "binary": "binary_classification"}
METRICS = {
    "regression": ("rmse", "mae", "r2", "band_accuracy", "confidence_mean", "confidence_ece",
                   "confidence_brier"),
    "binary": ("roc_auc", "accuracy", "f1", "log_loss", "brier"),
}  # fmt: skip


class SpecError(Exception):
    """A spec file is missing, malformed, or names something that does not exist."""


@dataclass(frozen=True)
class Derivation:
    column: str
    expression: str  # a pandas ``DataFrame.eval`` expression over existing columns


@dataclass(frozen=True)
class DataSpec:
    path: Path
    sha256: str
    expectations: Path
    encoding: str = "utf-8"
    na_values: tuple[str, ...] = ("",)
    rename: dict[str, str] = field(default_factory=dict)
    derive: tuple[Derivation, ...] = ()
    sort_by: str | None = None


@dataclass(frozen=True)
class Gates:
    """Thresholds a version must meet to become `candidate` (and to be promoted)."""

    primary: str
    greater_is_better: bool
    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)

    def failures(self, metrics: dict[str, float]) -> list[str]:
        out = []
        for name, bound in self.minimum.items():
            value = metrics.get(name)
            if value is None or value < bound:
                out.append(f"{name}={value} is below the minimum {bound}")
        for name, bound in self.maximum.items():
            value = metrics.get(name)
            if value is None or value > bound:
                out.append(f"{name}={value} is above the maximum {bound}")
        return out

    def better_or_equal(self, new: float, old: float) -> bool:
        return new >= old if self.greater_is_better else new <= old


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    task: str
    features: tuple[str, ...]
    nullable: tuple[str, ...]  # features that may be missing; rows missing any other are dropped
    label: dict[str, Any]  # {"column": ...} or {"function": ..., **parameters}
    data: DataSpec
    split: dict[str, Any]
    params: dict[str, Any]
    output: dict[str, Any]
    gates: Gates
    source: Path

    @property
    def label_column(self) -> str:
        return str(self.label.get("column", self.label.get("function")))


def available() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def load_spec(name: str) -> ModelSpec:
    if not is_model_name(name):  # before it becomes a path: `../specs/wqi` must not resolve
        raise SpecError(model_name_problem(name))
    path = SPECS_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available()) or "none"
        raise SpecError(f"unknown model {name!r}: no {path.relative_to(SPECS_DIR.parent.parent)}"
                        f" (known: {known})")  # fmt: skip
    return load_spec_file(path)


def load_spec_file(path: Path) -> ModelSpec:
    """A spec from any path; relative data paths are under ``data/``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return _parse(raw, path)
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{path.name}: {type(exc).__name__}: {exc}") from exc


def _parse(raw: dict[str, Any], path: Path) -> ModelSpec:
    model, data, gates = raw["model"], raw["data"], raw["gates"]
    if not is_model_name(model["name"]):
        raise ValueError(model_name_problem(str(model["name"])))
    if model["task"] not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {model['task']!r}")
    split = {"method": "random", "test_size": 0.2, "seed": 42} | raw.get("split", {})
    if split["method"] not in SPLITS:
        raise ValueError(f"split.method must be one of {SPLITS}")
    task = model["task"]
    if raw["output"]["kind"] != OUTPUT_KIND[task]:
        raise ValueError(f"[output] kind for a {task} model is {OUTPUT_KIND[task]!r}")
    named = {gates["primary"], *gates.get("min", {}), *gates.get("max", {})}
    if named - set(METRICS[task]):
        raise ValueError(f"[gates] name unknown metric(s) {sorted(named - set(METRICS[task]))}; "
                         f"a {task} model has {', '.join(METRICS[task])}")  # fmt: skip
    unknown = set(model.get("nullable_features", [])) - set(model["features"])
    if unknown:
        raise ValueError(f"nullable_features {sorted(unknown)} are not features")
    label = raw["label"]
    if ("column" in label) == ("function" in label):
        raise ValueError("[label] needs exactly one of 'column' or 'function'")
    data_spec = DataSpec(
        path=DATA_DIR / data["path"],
        sha256=data["sha256"],
        expectations=EXPECTATIONS_DIR / data["expectations"],
        encoding=data.get("encoding", "utf-8"),
        na_values=tuple(data.get("na_values", [""])),
        rename=dict(data.get("rename", {})),
        derive=tuple(Derivation(d["column"], d["expression"]) for d in data.get("derive", [])),
        sort_by=data.get("sort_by"),
    )
    if not data_spec.expectations.is_file():
        raise ValueError(f"expectation suite {data_spec.expectations} does not exist")
    return ModelSpec(
        name=model["name"],
        description=model.get("description", ""),
        task=model["task"],
        features=tuple(model["features"]),
        nullable=tuple(model.get("nullable_features", [])),
        label=dict(label),
        data=data_spec,
        split=split,
        params=dict(raw["train"]["params"]),
        output=dict(raw["output"]),
        gates=Gates(
            primary=gates["primary"],
            greater_is_better=bool(gates["greater_is_better"]),
            minimum={k: float(v) for k, v in gates.get("min", {}).items()},
            maximum={k: float(v) for k, v in gates.get("max", {}).items()},
        ),
        source=path,
    )
