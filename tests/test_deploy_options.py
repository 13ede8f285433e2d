"""`make deploy` adds --no-rollback exactly when keepInstanceOnFailure is true, read as the app reads it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.deploy_options import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("context", "options"),
    [([], ""), (["-c", "keepInstanceOnFailure=true"], "--no-rollback"), (["-c", "keepInstanceOnFailure=false"], "")],
)
def test_no_rollback_exactly_when_the_instance_is_kept(
    context: list[str], options: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(context) == 0
    assert capsys.readouterr().out == options + "\n"


def test_a_bad_setting_fails_with_the_apps_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "keepInstanceOnFailure=maybe"]) == 2
    assert capsys.readouterr().err == (
        "error: context 'keepInstanceOnFailure' = 'maybe' is invalid: allowed is true or false\n"
    )


def test_a_context_without_a_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["-c", "keepInstanceOnFailure"])
    assert exit_.value.code == 2
    assert "'keepInstanceOnFailure' is not KEY=VALUE" in capsys.readouterr().err


def test_make_deploy_passes_the_context_and_the_options_to_cdk() -> None:
    """With `echo` as the CDK CLI; -o: the install stamps count as up to date, nothing is installed."""
    stamps = ["-o", ".venv/.installed", "-o", "node_modules/.installed"]
    context = "CONTEXT=-c keepInstanceOnFailure=true -c runId=exp-2"
    result = subprocess.run(
        ["make", "-s", *stamps, "deploy", "CDK=echo cdk", context],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "cdk deploy --all -c keepInstanceOnFailure=true -c runId=exp-2 --no-rollback\n"
