"""Models a newcomer might add (README, "Add a model"), generated: a CSV (fixed seed
and formatting, so the same bytes and SHA-256 every run), its expectation suite, and its spec
(``tests/extra_specs/<name>.toml``, with the CSV's SHA-256 filled in).

Their answers have fields of their own, unlike the shipped two: ``clarity`` answers
``{"transparent": ..., "probability": ...}``, ``oxygen`` answers ``{"oxygen": ..., "grade":
...}`` from a timestamped reading (its ``hour_of_day`` comes from the timestamp), and
``throwaway`` (tests/test_new_model_e2e.py) ``{"clear": ..., "probability": ...}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPECS = Path(__file__).resolve().parent / "extra_specs"
NUMERIC = ["float64", "Float64", "float32", "int64", "Int64"]


@dataclass(frozen=True)
class ExtraModel:
    name: str
    csv: bytes
    ranges: dict[str, tuple[float, float]]  # every numeric column and its physical range
    label: str
    label_values: tuple[int, ...] | None = None  # a classifier's label values
    text: tuple[str, ...] = ()  # text columns (a timestamp)

    @property
    def files(self) -> dict[str, bytes]:
        """The three files the model adds, by their path in a checkout."""
        template = (SPECS / f"{self.name}.toml").read_text(encoding="utf-8")
        spec = template.replace("@SHA256@", hashlib.sha256(self.csv).hexdigest())
        return {
            f"data/{self.name}.csv": self.csv,
            f"data/expectations/{self.name}.json": json.dumps(self.suite(), indent=2).encode(),
            f"training/specs/{self.name}.toml": spec.encode(),
        }

    def write(self, repo: Path) -> list[str]:
        """Write the three files into ``repo``; their paths, relative to it."""
        for path, content in self.files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_bytes(content)
        return sorted(self.files)

    def suite(self) -> dict[str, Any]:
        """What README step 2 asks for: per column exists, its type, not null and (a number)
        a physical range; a classifier's label its set of values."""
        expectations: list[dict[str, Any]] = [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
        ]
        if self.label_values is not None:
            in_set = {"column": self.label, "value_set": list(self.label_values)}
            expectations.append({"type": "expect_column_values_to_be_in_set", "kwargs": in_set})
        for column in (*self.ranges, *self.text):
            kind = (
                {"type": "expect_column_values_to_be_of_type",
                 "kwargs": {"column": column, "type_": "str"}}
                if column in self.text
                else {"type": "expect_column_values_to_be_in_type_list",
                      "kwargs": {"column": column, "type_list": NUMERIC}}
            )  # fmt: skip
            expectations += [
                {"type": "expect_column_to_exist", "kwargs": {"column": column}},
                kind,
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}},
            ]
        for column, (low, high) in self.ranges.items():
            bounds = {"column": column, "min_value": low, "max_value": high}
            expectations.append({"type": "expect_column_values_to_be_between", "kwargs": bounds})
        return {"name": self.name, "meta": {"dataset": f"{self.name}.csv"},
                "expectations": expectations}  # fmt: skip


def _lines(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _throwaway_csv(rows: int = 600) -> bytes:
    rng = np.random.default_rng(10)
    conductivity = rng.uniform(100, 2000, rows)
    temperature = rng.uniform(10, 30, rows)
    turbidity = rng.gamma(2.0, 3.0, rows)
    clear = (turbidity + rng.normal(0, 1.5, rows) < 5).astype(int)
    return _lines("conductivity,temperature,turbidity,clear", [
        f"{c:.1f},{t:.2f},{u:.2f},{k}"
        for c, t, u, k in zip(conductivity, temperature, turbidity, clear, strict=True)
    ])  # fmt: skip


def _clarity_csv(rows: int = 800) -> bytes:
    rng = np.random.default_rng(20)
    turbidity = rng.gamma(2.0, 3.0, rows)
    colour = rng.uniform(0, 80, rows)
    conductivity = rng.uniform(100, 2000, rows)
    clear = (turbidity + colour / 20 + rng.normal(0, 1.5, rows) < 7).astype(int)
    return _lines("turbidity,colour,conductivity,clear", [
        f"{t:.2f},{c:.1f},{k:.1f},{y}"
        for t, c, k, y in zip(turbidity, colour, conductivity, clear, strict=True)
    ])  # fmt: skip


def _oxygen_csv(rows: int = 1500) -> bytes:
    """Half-hourly readings over a month; the oxygen index follows the temperature, the
    salinity and the time of day (photosynthesis by day)."""
    rng = np.random.default_rng(21)
    stamps = np.datetime64("2025-03-01T00:00") + np.arange(rows) * np.timedelta64(30, "m")
    hours = (np.arange(rows) % 48) / 2.0
    temperature = 20 + 4 * np.sin(np.arange(rows) / 300) + rng.normal(0, 1.5, rows)
    salinity = rng.uniform(0, 35, rows)
    index = (95 - 1.5 * (temperature - 15) - 0.4 * salinity
             + 8 * np.sin(2 * np.pi * (hours - 6) / 24) + rng.normal(0, 4, rows))  # fmt: skip
    return _lines("sampled_at,temperature,salinity,do_index", [
        f"{s!s}:00,{t:.2f},{a:.2f},{y:.2f}"
        for s, t, a, y in zip(stamps, temperature, salinity, np.clip(index, 0, 100), strict=True)
    ])  # fmt: skip


THROWAWAY = ExtraModel(
    name="throwaway",
    csv=_throwaway_csv(),
    ranges={
        "conductivity": (0.0, 5000.0),
        "temperature": (0.0, 40.0),
        "turbidity": (0.0, 100.0),
        "clear": (0, 1),
    },
    label="clear",
    label_values=(0, 1),
)
CLARITY = ExtraModel(
    name="clarity",
    csv=_clarity_csv(),
    ranges={
        "turbidity": (0.0, 200.0),
        "colour": (0.0, 500.0),
        "conductivity": (0.0, 5000.0),
        "clear": (0, 1),
    },
    label="clear",
    label_values=(0, 1),
)
OXYGEN = ExtraModel(
    name="oxygen",
    csv=_oxygen_csv(),
    ranges={"temperature": (0.0, 40.0), "salinity": (0.0, 40.0), "do_index": (0.0, 100.0)},
    label="do_index",
    text=("sampled_at",),
)
# Two models beside the shipped ones: other output names, one with a timestamp.
EXTRA_MODELS = (CLARITY, OXYGEN)
