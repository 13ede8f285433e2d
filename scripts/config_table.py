"""Prints the README's configuration table from the settings object (a test keeps the README in step)."""

from __future__ import annotations

import json

from stacks.settings import OPTIONS


def config_table() -> str:
    rows = ["| Context key | Default | Allowed | What it does |", "|---|---|---|---|"]
    for option in OPTIONS:
        default = json.dumps(option.default) if option.default != "" else '""'
        rows.append(f"| `{option.key}` | `{default}` | {option.allowed} | {option.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(config_table())
