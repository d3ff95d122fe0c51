"""What a workflow step hands to the next: `key=value` lines appended to $GITHUB_OUTPUT."""

from __future__ import annotations

import os
from collections.abc import Mapping


def write_outputs(values: Mapping[str, str]) -> None:
    """Append ``values`` to the step's outputs.

    Raises:
        KeyError: GITHUB_OUTPUT is not set (not inside a workflow step).
    """
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.writelines(f"{key}={value}\n" for key, value in values.items())
