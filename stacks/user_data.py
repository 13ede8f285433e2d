"""Renders the training instance's user data: the run's settings as exports, then the bootstrap script.

The script stays a plain file (`training/bootstrap.sh`) so shellcheck and the offline tests run the
very bytes the instance runs; only its shebang is replaced by the export block.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

BOOTSTRAP_SCRIPT = Path(__file__).resolve().parent.parent / "training" / "bootstrap.sh"


def render_user_data(variables: Mapping[str, str], script: Path = BOOTSTRAP_SCRIPT) -> str:
    """`variables` may hold CDK tokens (bucket names, the WaitCondition URL); CDK joins them at synth."""
    body = script.read_text().split("\n", 1)[1]
    exports = "".join(f"export {name}={_quote(value)}\n" for name, value in variables.items())
    return f"#!/bin/bash\n# Rendered by stacks/user_data.py from training/bootstrap.sh\n{exports}{body}"


def _quote(value: str) -> str:
    """Single-quoted for bash; the values come from validated settings or AWS-generated names and URLs."""
    return "'" + value.replace("'", "'\"'\"'") + "'"
