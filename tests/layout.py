"""The checkout's layout, for the tests that copy or link part of it into a working folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The modules at the top, outside any stage folder (settings.py, document.py): every stage may
# import them, so every partial copy needs them all.
ROOT_MODULES = tuple(sorted(path.name for path in REPO.glob("*.py")))
