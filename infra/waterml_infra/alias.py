"""Move the `live` alias to a published version (after its smoke test), or back.

    python -m waterml_infra.alias --function-name waterml-dev-wqi --version 8 [--alias live]

Uses the alias' RevisionId so that two concurrent moves cannot silently overwrite each other.
Prints the previous version, which is what a rollback of the image moves the alias back to.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any


class AliasError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class AliasMove:
    alias: str
    previous: str
    current: str

    @property
    def changed(self) -> bool:
        return self.previous != self.current


def move_alias(client: Any, function_name: str, version: str, alias: str = "live") -> AliasMove:
    if not version.isdigit():
        raise AliasError(f"{alias} may only point at a published version, not {version!r}")
    # The version must exist (and belong to this function) before anything moves.
    client.get_function_configuration(FunctionName=function_name, Qualifier=version)
    current = client.get_alias(FunctionName=function_name, Name=alias)
    previous = str(current["FunctionVersion"])
    if previous == version:
        return AliasMove(alias, previous, version)
    client.update_alias(
        FunctionName=function_name,
        Name=alias,
        FunctionVersion=version,
        RevisionId=current["RevisionId"],
    )
    return AliasMove(alias, previous, version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--alias", default="live")
    args = parser.parse_args(argv)
    import boto3

    client = boto3.client("lambda")
    try:
        move = move_alias(client, args.function_name, args.version, args.alias)
    except (AliasError, client.exceptions.ResourceNotFoundException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if move.changed:
        print(f"{args.function_name}:{move.alias} moved from {move.previous} to {move.current}")
    else:
        print(f"{args.function_name}:{move.alias} already at {move.current}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
