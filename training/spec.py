"""Declarative model specs (``training/specs/<name>.toml``): all a new model needs besides
its dataset and its expectation suite."""

from __future__ import annotations

import codecs
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import calendar_features
from inference.bundle import is_model_name, model_name_problem
from settings import DATA_DIR, EXPECTATIONS_DIR, SPECS_DIR
from training.errors import SpecError
from training.expressions import Expression

TASKS = ("regression", "binary")
SPLITS = ("chronological", "stratified", "random")
ENGINES = ("pandas", "spark")  # [train] engine: where loading, validation and boosting run
# The answer kind each task serves, and the held-out metrics training computes for it.
OUTPUT_KIND = {"regression": "banded_regression", "binary": "binary_classification"}
METRICS = {
    "regression": ("rmse", "mae", "r2", "band_accuracy", "confidence_mean", "confidence_ece",
                   "confidence_brier"),
    "binary": ("roc_auc", "accuracy", "f1", "log_loss", "brier"),
}  # fmt: skip


@dataclass(frozen=True)
class Derivation:
    column: str
    expression: str  # a pandas ``DataFrame.eval`` expression over existing columns
    columns: frozenset[str] = frozenset()  # the columns it reads

    @property
    def label(self) -> str:
        return f"derivation {self.column!r} = {self.expression!r}"


@dataclass(frozen=True)
class TimestampSpec:
    """``[data] timestamp``: the column calendar features come from, how it is written, and
    the UTC offset of its clock (of values written without one, and of the features)."""

    column: str
    format: str  # ISO_8601, or a strptime format such as "%Y/%m/%d %H:%M"
    utc_offset: str  # "+10:00"; the features are the wall clock at this offset

    @property
    def label(self) -> str:
        return f"[data] timestamp column {self.column!r}"


ISO_8601 = "ISO8601"
TIMESTAMP_KEYS = ("column", "format", "utc_offset")


@dataclass(frozen=True)
class DataSpec:
    path: Path
    sha256: str
    expectations: Path
    encoding: str = "utf-8"
    na_values: tuple[str, ...] = ("",)  # replaces pandas' default markers (keep_default_na off)
    rename: dict[str, str] = field(default_factory=dict)
    derive: tuple[Derivation, ...] = ()
    sort_by: str | None = None
    filter: Expression | None = None  # rows where it is false are removed before validation
    timestamp: TimestampSpec | None = None  # where calendar features come from
    calendar: tuple[str, ...] = ()  # the model's calendar features, derived when loading
    source: Path | None = None  # the spec file, for messages that name the key to edit


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
    engine: str = "pandas"  # one of ENGINES; the bundle and the registration are the same

    @property
    def label_column(self) -> str:
        return str(self.label.get("column", self.label.get("function")))

    @property
    def calendar_features(self) -> tuple[str, ...]:
        """Features derived from the timestamp (inference/calendar_features.py), in order."""
        return self.data.calendar


def available() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def load_spec(name: str) -> ModelSpec:
    """The spec of a model in ``training/specs/``.

    Raises:
        SpecError: an invalid model name, no such spec, or a spec that does not load.
    """
    if not is_model_name(name):  # before it becomes a path: `../specs/wqi` must not resolve
        raise SpecError(model_name_problem(name))
    path = SPECS_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available()) or "none"
        raise SpecError(f"unknown model {name!r}: no {path.relative_to(SPECS_DIR.parent.parent)}"
                        f" (known: {known})")  # fmt: skip
    return load_spec_file(path)


def load_spec_file(path: Path) -> ModelSpec:
    """A spec from any path; relative data paths are under ``data/``.

    Raises:
        SpecError: the file cannot be read, is not TOML, or a key is missing or wrong; the
            message names the file and the key.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return _parse(raw, path)
    except SpecError as exc:
        raise SpecError(f"{path.name}: {exc}") from None
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
    _check_output(raw["output"])
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
    engine = _engine(raw["train"])
    encoding = data.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SpecError(f"[data] encoding {encoding!r} is not an encoding Python knows "
                        f"(e.g. \"utf-8\", \"cp1252\", \"latin-1\")") from None  # fmt: skip
    na_values = data.get("na_values", [""])
    if not isinstance(na_values, list) or not all(isinstance(v, str) for v in na_values):
        raise SpecError('[data] na_values must be a list of strings, e.g. ["", "NA"]')
    derive = []
    for d in data.get("derive", []):
        what = Derivation(d["column"], d["expression"]).label
        derive.append(Derivation(d["column"], d["expression"],
                                 Expression.parse(d["expression"], what).columns))  # fmt: skip
    row_filter = data.get("filter")
    timestamp = _timestamp(data.get("timestamp"))
    dated = [f for f in model["features"] if f in calendar_features.FEATURES]
    if dated and timestamp is None:
        raise SpecError(f"features {dated} are calendar features of a timestamp: add "
                        f'[data] timestamp = {{ column = "...", format = "{ISO_8601}", '
                        f'utc_offset = "+00:00" }}')  # fmt: skip
    data_spec = DataSpec(
        path=DATA_DIR / data["path"],
        sha256=data["sha256"],
        expectations=EXPECTATIONS_DIR / data["expectations"],
        encoding=encoding,
        na_values=tuple(na_values),
        rename=dict(data.get("rename", {})),
        derive=tuple(derive),
        sort_by=data.get("sort_by"),
        filter=None
        if row_filter is None
        else Expression.parse(row_filter, f"[data] filter {row_filter!r}"),
        timestamp=timestamp,
        calendar=tuple(dated),
        source=path,
    )
    if not data_spec.expectations.is_file():
        raise ValueError(f"expectation suite {data_spec.expectations} does not exist")
    return ModelSpec(
        name=model["name"],
        description=model.get("description", ""),
        task=model["task"],
        features=tuple(model["features"]),
        # A reading without a timestamp is answered: its calendar features are missing (NaN).
        nullable=tuple(dict.fromkeys([*model.get("nullable_features", []), *dated])),
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
        engine=engine,
    )


def _engine(train: dict[str, Any]) -> str:
    """``[train] engine``: "pandas" (this process) or "spark" (training/engines/spark.py)."""
    engine = train.get("engine", "pandas")
    if engine not in ENGINES:
        raise SpecError(f"[train] engine must be one of {', '.join(map(repr, ENGINES))}, "
                        f"not {engine!r}")  # fmt: skip
    return str(engine)


def _timestamp(raw: Any) -> TimestampSpec | None:
    """``[data] timestamp = { column, format, utc_offset }``, checked as the spec loads."""
    if raw is None:
        return None
    what = "[data] timestamp"
    if not isinstance(raw, dict):
        raise SpecError(f'{what} must be a table: {{ column = "Timestamp", format = "{ISO_8601}", '
                        f'utc_offset = "+10:00" }}')  # fmt: skip
    unknown = sorted(set(raw) - set(TIMESTAMP_KEYS))
    if unknown:
        raise SpecError(f"{what} has unknown key(s) {unknown}; it takes "
                        f"{', '.join(TIMESTAMP_KEYS)}")  # fmt: skip
    column, form = raw.get("column"), raw.get("format", ISO_8601)
    if not isinstance(column, str) or not column:
        raise SpecError(f"{what} column must name the column holding the timestamps")
    if not isinstance(form, str) or (form != ISO_8601 and "%" not in form):
        raise SpecError(f'{what} format must be "{ISO_8601}" or a strptime format such as '
                        f'"%Y/%m/%d %H:%M", not {form!r}')  # fmt: skip
    if "utc_offset" not in raw:
        raise SpecError(f"{what} utc_offset is required: the UTC offset of the data's clock, "
                        f'e.g. "+10:00" (the calendar features are that clock\'s)')  # fmt: skip
    try:
        calendar_features.utc_offset_seconds(raw["utc_offset"])
    except ValueError as exc:
        raise SpecError(f"{what} {exc}") from None
    return TimestampSpec(column, form, raw["utc_offset"])


def _check_output(output: dict[str, Any]) -> None:
    """What serving's answer needs (inference/outputs.py), checked before training instead of
    failing when the bundle is built."""

    def need(key: str, kinds: tuple[type, ...], what: str) -> Any:
        if key not in output:
            raise SpecError(f"[output] {key} is required for {output['kind']} ({what})")
        value = output[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise SpecError(f"[output] {key} must be {what}, not {value!r}")
        return value

    if output["kind"] == "binary_classification":
        need("label_name", (str,), "the answer's field name, e.g. potable")
        threshold = need("threshold", (int, float), "a number between 0 and 1")
        if not 0.0 < threshold < 1.0:
            raise SpecError(f"[output] threshold must be a number between 0 and 1, not {threshold}")
        return
    need("value_name", (str,), "the answer's field name, e.g. wqi")
    need("band_name", (str,), "the band's field name, e.g. quality")
    clip = need("clip", (list,), "[low, high]")
    if not (len(clip) == 2 and all(isinstance(v, int | float) for v in clip) and clip[0] < clip[1]):
        raise SpecError(f"[output] clip must be [low, high] with low < high, not {clip!r}")
    bands = need("bands", (list,), "a list of { label, min }")
    if not bands:
        raise SpecError("[output] bands must list at least one { label, min }")
    for i, band in enumerate(bands):
        if not (isinstance(band, dict) and isinstance(band.get("label"), str)
                and isinstance(band.get("min"), int | float)):  # fmt: skip
            raise SpecError(f"[output] bands[{i}] must be {{ label = \"...\", min = number }}, "
                            f"not {band!r}")  # fmt: skip
