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
import re
from typing import Any

FORMAT = "waterml-bundle/1"
# A schema with calendar features (derived from the record's timestamp): serving code older
# than them would ask for those features as readings, so it refuses the bundle at load instead.
FORMAT_CALENDAR = "waterml-bundle/2"
FORMATS = (FORMAT, FORMAT_CALENDAR)
# The bundle's file name wherever it is stored: a run's artifacts, the S3 release key.
BUNDLE_FILENAME = "model.joblib"
REQUIRED_KEYS = ("format", "name", "schema", "predictor", "output", "golden", "metadata")
_PLAIN = (str, bytes, int, float, bool, type(None))


class BundleError(Exception):
    """The bundle is malformed, or not one this code can serve."""


class DigestMismatch(BundleError):
    def __init__(self, expected: str, actual: str, where: str) -> None:
        super().__init__(f"SHA-256 mismatch for {where}: expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual


# The names a model may have: a spec file, an MLflow registered model, an S3 prefix and a
# function name are all derived from it, so nothing that walks paths or needs quoting.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# A SHA-256 as people paste it; digests are compared and stored in lowercase.
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None


def model_name_problem(name: str) -> str:
    """Why ``name`` is not a model name (for a one-line error)."""
    return (
        f"invalid model name {name!r}: use lowercase letters, digits, '-' or '_', starting"
        " with a letter (at most 63 characters)"
    )


def normalize_sha256(text: object) -> str | None:
    """The digest in canonical (lowercase) form, or None when ``text`` is not 64 hex digits.
    A digest pasted in upper case names the same bytes, so it compares equal."""
    if not isinstance(text, str) or not SHA256_HEX.fullmatch(text.strip()):
        return None
    return text.strip().lower()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_digest(data: bytes, expected: str, where: str) -> None:
    """Check ``data`` against the SHA-256 it must have, before anything reads it.

    Raises:
        DigestMismatch: the bytes' digest differs; the message names ``where``.
    """
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise DigestMismatch(expected, actual, where)


def check_plain(obj: Any, path: str = "bundle") -> None:
    """Check that ``obj`` is made of builtins only (what ``loads`` can read back).

    Raises:
        BundleError: naming the first key or value that is not plain data, by its path.
    """
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
    """Read a bundle whose digest the caller has already verified.

    Raises:
        BundleError: not a readable pickle, a reference to any code, not a mapping, a missing
            key, or a format this code does not serve.
    """
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
    if bundle["format"] not in FORMATS:
        raise BundleError(f"bundle format {bundle['format']!r} is not one of {FORMATS}")
    return bundle
