"""The model bundle contract: one joblib file holding plain data only.

A bundle is a dict of builtins (dict, list, str, bytes, int, float, bool, None): the model is
an ONNX graph kept as bytes, so unpickling runs no code and needs neither joblib, scikit-learn
nor xgboost. ``loads`` enforces that with an unpickler that refuses every global, and callers
check the SHA-256 before calling it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any

FORMAT = "waterml-bundle/1"
REQUIRED_KEYS = ("format", "name", "schema", "predictor", "output", "golden", "metadata")
_PLAIN = (str, bytes, int, float, bool, type(None))


class BundleError(Exception):
    """The bundle is malformed, or not one this code can serve."""


class DigestMismatch(BundleError):
    def __init__(self, expected: str, actual: str, where: str) -> None:
        super().__init__(f"SHA-256 mismatch for {where}: expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_digest(data: bytes, expected: str, where: str) -> None:
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise DigestMismatch(expected, actual, where)


def check_plain(obj: Any, path: str = "bundle") -> None:
    """Raise unless ``obj`` is made of builtins only (what ``loads`` can read back)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise BundleError(f"{path}: key {key!r} is not a string")
            check_plain(value, f"{path}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            check_plain(value, f"{path}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise BundleError(f"{path}: {type(obj).__name__} is not plain data")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise BundleError(f"bundle references {module}.{name}; only plain data is allowed")


def loads(data: bytes) -> dict[str, Any]:
    """Read a bundle whose digest the caller has already verified."""
    try:
        bundle = _PlainUnpickler(io.BytesIO(data)).load()
    except BundleError:
        raise
    except Exception as exc:  # any pickle-level corruption
        raise BundleError(f"bundle is not a readable pickle: {exc}") from exc
    if not isinstance(bundle, dict):
        raise BundleError("bundle is not a mapping")
    missing = [k for k in REQUIRED_KEYS if k not in bundle]
    if missing:
        raise BundleError(f"bundle lacks {', '.join(missing)}")
    if bundle["format"] != FORMAT:
        raise BundleError(f"bundle format {bundle['format']!r} is not {FORMAT!r}")
    return bundle
