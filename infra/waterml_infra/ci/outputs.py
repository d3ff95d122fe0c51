"""Read what `cdk deploy --outputs-file` recorded for the serving stack.

    python -m waterml_infra.ci.outputs cdk-outputs.json --stack WaterMl-dev-Serving-wqi \
        [--github-output]

Prints `function_name`, `version` (the version this deploy published) and `live_version`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from waterml_infra.ci.github import write_outputs

KEYS = {"function_name": "FunctionName", "version": "FunctionVersion", "alias": "LiveAliasName"}


class OutputsError(ValueError):
    pass


def serving_outputs(data: dict[str, dict[str, str]], stack: str) -> dict[str, str]:
    if stack not in data:
        raise OutputsError(f"no outputs for stack {stack!r}; have {sorted(data)}")
    outputs = data[stack]
    missing = [cfn for cfn in KEYS.values() if cfn not in outputs]
    if missing:
        raise OutputsError(f"stack {stack} lacks outputs {missing}")
    result = {key: str(outputs[cfn]) for key, cfn in KEYS.items()}
    if not result["version"].isdigit():
        raise OutputsError(f"published version {result['version']!r} is not a number")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs_file", type=Path)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--github-output", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = serving_outputs(json.loads(args.outputs_file.read_text()), args.stack)
    except (OutputsError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.github_output:
        write_outputs(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
