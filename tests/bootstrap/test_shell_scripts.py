"""Static checks on the shell scripts: shellcheck, and the bootstrap's room inside EC2 user data."""

from __future__ import annotations

import shutil
import subprocess

from tests.bootstrap.bootstrap_sandbox import REPO, SCRIPT, STANDINS

# EC2 caps user data at 16 KB. The exports CDK puts in front of the script (URLs, the presigned
# WaitCondition URL of ~600 characters) need about 2 KB; 3 KB stay free for them (the exact sum, with
# every token at its longest, is checked on the template by tests/stacks/test_templates.py).
MAX_SCRIPT_BYTES = 13 * 1024


def test_shellcheck_is_clean() -> None:
    # Not skipped when missing: the Makefile installs it (Debian package `shellcheck`).
    assert shutil.which("shellcheck"), "shellcheck is not installed: apt-get install -y shellcheck"
    scripts = [SCRIPT, REPO / "scripts" / "aws_e2e.sh", *sorted(STANDINS.iterdir())]
    result = subprocess.run(
        ["shellcheck", *(str(path.relative_to(REPO)) for path in scripts)],
        cwd=REPO,  # the stand-ins' `# shellcheck source=` paths are relative to the repository
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_bootstrap_leaves_room_for_the_exports_in_user_data() -> None:
    assert len(SCRIPT.read_bytes()) <= MAX_SCRIPT_BYTES
