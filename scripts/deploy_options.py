"""The options `make deploy` adds to `cdk deploy`, from the settings the app reads (cdk.json, then `-c`).

keepInstanceOnFailure=true keeps a failed training instance up for debugging. CloudFormation's rollback
of the failed stack would terminate it, so such a deploy runs with --no-rollback: the failed stack stays
as it failed (CREATE_FAILED or UPDATE_FAILED) until the next deploy, `cdk rollback` or `cdk destroy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stacks.settings import Settings, SettingsError

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def deploy_options(context: dict[str, Any]) -> list[str]:
    settings = Settings.from_mapping(context)
    return ["--no-rollback"] if settings.keep_instance_on_failure else []


def key_value(pair: str) -> tuple[str, str]:
    key, equals, value = pair.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{pair!r} is not KEY=VALUE")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--context", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    context = json.loads(CDK_JSON.read_text())["context"]
    context.update(args.context)
    try:
        print(" ".join(deploy_options(context)))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
