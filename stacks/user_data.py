"""Renders the training instance's user data: the run's settings as exports, then the bootstrap script.

EC2 caps user data at 16 KB. The script stays a plain file (`training/bootstrap.sh`), which shellcheck
and the offline tests run; the user data carries it without its comment lines (a quarter of its
compressed size; the repository holds the commented source), gzip-compressed and base64-encoded
behind a stub that unpacks it to `$WORK_ROOT/bootstrap.sh` (default /opt/pt2) and runs it there. The
bytes are deterministic (gzip mtime 0): an unchanged script leaves the user data, and so the
instance, unchanged.
"""

from __future__ import annotations

import base64
import gzip
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

BOOTSTRAP_SCRIPT = Path(__file__).resolve().parent.parent / "training" / "bootstrap.sh"
UNPACKED = '"${WORK_ROOT:-/opt/pt2}/bootstrap.sh"'
END_MARKER = "BOOTSTRAP"
# A whole-line comment, in bash or in the script's Python heredocs; the shebang stays.
COMMENT_LINE = re.compile(r"^[ \t]*#(?!!).*\n", re.MULTILINE)


def render_user_data(variables: Mapping[str, str], script: Path = BOOTSTRAP_SCRIPT) -> str:
    """`variables` may hold CDK tokens (bucket names, the WaitCondition URL); CDK joins them at synth."""
    exports = "".join(f"export {name}={_quote(value)}\n" for name, value in variables.items())
    compressed = gzip.compress(shipped_script(script).encode(), mtime=0)
    packed = "\n".join(textwrap.wrap(base64.b64encode(compressed).decode(), 76))
    return (
        "#!/bin/bash\n"
        "# Rendered by stacks/user_data.py: the run's settings, then training/bootstrap.sh (gzip, base64)\n"
        f"{exports}"
        "set -eo pipefail\n"
        'mkdir -p "${WORK_ROOT:-/opt/pt2}"\n'
        f"base64 -d <<'{END_MARKER}' | gunzip >{UNPACKED}\n{packed}\n{END_MARKER}\n"
        f"exec bash {UNPACKED}\n"
    )


def shipped_script(script: Path = BOOTSTRAP_SCRIPT) -> str:
    """The script as the instance gets it: without its whole-line comments."""
    return COMMENT_LINE.sub("", script.read_text())


def unpack_bootstrap(user_data: str) -> bytes:
    """The script a rendered user data carries (tests and readers of a deployed instance's user data)."""
    packed = user_data.split(f"<<'{END_MARKER}' | gunzip >{UNPACKED}\n", 1)[1].split(f"\n{END_MARKER}\n", 1)[0]
    return gzip.decompress(base64.b64decode(packed))


def _quote(value: str) -> str:
    """Single-quoted for bash; the values come from validated settings or AWS-generated names and URLs."""
    return "'" + value.replace("'", "'\"'\"'") + "'"
