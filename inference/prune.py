"""Removes what serving never imports from an installed dependency folder (the image's
/asset, the dependency-set test's folder, the benchmark's): test suites, type stubs, and
onnxruntime's model-conversion tooling. Run before byte-compiling.

    python inference/prune.py DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Subpackages no serving import reaches (checked by the dependency-set test, which prunes too).
UNUSED = (
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
    "numpy/f2py",
    "numpy/_pyinstaller",
)


def prune(root: Path) -> int:
    """Bytes removed."""
    doomed = [root / p for p in UNUSED if (root / p).exists()]
    doomed += [p for p in root.rglob("tests") if p.is_dir()]
    doomed += list(root.rglob("*.pyi"))
    removed = 0
    for path in doomed:
        if not path.exists():  # inside an already removed folder
            continue
        if path.is_dir():
            removed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        else:
            removed += path.stat().st_size
            path.unlink()
    return removed


if __name__ == "__main__":
    freed = prune(Path(sys.argv[1]))
    print(f"pruned {freed / 1e6:.1f} MB from {sys.argv[1]}")
