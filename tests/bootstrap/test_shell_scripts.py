"""Static checks on the shell scripts (the user data's 16 KB cap is checked on the rendered template)."""

from __future__ import annotations

import shutil
import subprocess

from tests.bootstrap.bootstrap_sandbox import CONTAINER_STANDINS, REPO, SCRIPT, STANDINS


def test_shellcheck_is_clean() -> None:
    # Not skipped when missing: the Makefile installs it (Debian package `shellcheck`).
    assert shutil.which("shellcheck"), "shellcheck is not installed: apt-get install -y shellcheck"
    standins = [*sorted(STANDINS.iterdir()), *sorted(CONTAINER_STANDINS.iterdir())]
    scripts = [SCRIPT, REPO / "scripts" / "aws_e2e.sh", *standins]
    result = subprocess.run(
        ["shellcheck", *(str(path.relative_to(REPO)) for path in scripts)],
        cwd=REPO,  # the stand-ins' `# shellcheck source=` paths are relative to the repository
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
