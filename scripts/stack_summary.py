"""The AWS resources `cdk deploy` would create, per synthesized stack (read from cdk.out)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def summarize(template: dict) -> list[str]:
    counts = Counter(resource["Type"] for resource in template.get("Resources", {}).values())
    return [f"  {count:3d}  {resource_type}" for resource_type, count in sorted(counts.items())]


def stack_summary(cdk_out: Path) -> list[str]:
    """Per stack: its name, resource count and description, then one line per resource type."""
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    names = [name for name, artifact in manifest["artifacts"].items() if artifact["type"] == "aws:cloudformation:stack"]
    lines = []
    for name in names:
        template = json.loads((cdk_out / f"{name}.template.json").read_text())
        count = len(template.get("Resources", {}))
        lines.append(f"{name} ({count} resources): {template.get('Description', '')}")
        lines.extend(summarize(template))
    return lines
