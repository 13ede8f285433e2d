"""scripts/aws_e2e.sh, with stand-ins for aws and npx: it refuses by default and always destroys."""

from __future__ import annotations

import pytest

from tests.bootstrap.bootstrap_sandbox import REPO, Run, Sandbox

E2E = REPO / "scripts" / "aws_e2e.sh"


def run_e2e(sandbox: Sandbox, *args: str) -> Run:
    return sandbox.run(["bash", str(E2E), *args])


def test_refuses_without_an_explicit_yes(sandbox: Sandbox) -> None:
    run = run_e2e(sandbox)

    assert run.returncode == 2
    assert "pass --yes or set CONFIRM=1" in run.stderr
    assert run.calls == []


def test_refuses_without_aws_credentials(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "aws:sts get-caller-identity*"
    run = run_e2e(sandbox, "--yes")

    assert run.returncode == 2
    assert "no usable AWS credentials" in run.stderr
    assert run.calls_to("npx") == []


@pytest.mark.parametrize("confirm", [["--yes"], []])
def test_a_failed_deploy_is_still_destroyed(sandbox: Sandbox, confirm: list[str]) -> None:
    if not confirm:
        sandbox.env["CONFIRM"] = "1"
    sandbox.env["STANDIN_FAIL"] = "npx:cdk deploy *"
    run = run_e2e(sandbox, *confirm, "-c", "runId=e2e")

    assert run.returncode != 0
    assert run.calls_to("npx") == [
        ["cdk", "deploy", "--all", "--require-approval", "never", "-c", "runId=e2e"],
        ["cdk", "destroy", "--all", "--force", "-c", "runId=e2e"],
    ]


def test_a_failed_destroy_says_resources_may_still_bill(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "npx:cdk destroy *"
    sandbox.env["PYTHON"] = "true"  # stands in for `python -m inference.predict`
    run = run_e2e(sandbox, "--yes")

    assert run.returncode == 1
    assert "DESTROY FAILED" in run.stderr
