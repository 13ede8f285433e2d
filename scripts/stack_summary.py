"""Prints, per synthesized stack, the AWS resources `cdk deploy` would create (read from cdk.out)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def summarize(template: dict) -> list[str]:
    counts = Counter(resource["Type"] for resource in template.get("Resources", {}).values())
    return [f"  {count:3d}  {resource_type}" for resource_type, count in sorted(counts.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    args = parser.parse_args()
    manifest = json.loads((args.cdk_out / "manifest.json").read_text())
    artifacts = manifest["artifacts"].items()
    for name in [name for name, artifact in artifacts if artifact["type"] == "aws:cloudformation:stack"]:
        template = json.loads((args.cdk_out / f"{name}.template.json").read_text())
        print(f"{name}: {template.get('Description', '')}")
        print("\n".join(summarize(template)))


if __name__ == "__main__":
    main()
