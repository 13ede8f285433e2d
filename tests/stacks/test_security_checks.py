"""cdk-nag, cfn-lint and checkov verdicts on the real templates, and the real CDK CLI's synth."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stacks import app_builder
from stacks.app_builder import Application
from tests.stacks.synthesis import Synthesized

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
ACKNOWLEDGED = {
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-EC29",
}


@pytest.mark.parametrize("fixture", ["default_app", "cluster_app"])
def test_synth_with_cdk_nag_has_no_unacknowledged_findings(fixture: str, request: pytest.FixtureRequest) -> None:
    app: Synthesized = request.getfixturevalue(fixture)
    report = json.loads((app.outdir / "validation-report.json").read_text())
    violations = [violation for plugin in report["pluginReports"] for violation in plugin.get("violations", [])]
    assert violations == []


def test_every_acknowledgement_is_still_needed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the acknowledgements, cdk-nag reports exactly the rules we acknowledge: none is stale."""
    monkeypatch.setattr(app_builder, "acknowledge_findings", lambda application: None)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        Application(outdir=str(tmp_path)).app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    found = {rule for rule in ACKNOWLEDGED if rule in report}
    assert found == ACKNOWLEDGED


def test_acknowledgements_carry_specific_reasons() -> None:
    source = (ROOT / "stacks" / "security_acknowledgements.py").read_text()
    reasons = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 60
    ]
    assert len(reasons) >= 10
    assert len(set(reasons)) == len(reasons)


@pytest.mark.parametrize("fixture", ["default_app", "custom_app", "existing_model_app", "cluster_app"])
def test_cfn_lint_is_clean(fixture: str, request: pytest.FixtureRequest) -> None:
    app: Synthesized = request.getfixturevalue(fixture)
    templates = sorted(str(path) for path in app.outdir.glob("*.template.json"))
    result = subprocess.run([VENV_BIN / "cfn-lint", *templates], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("fixture", ["default_app", "custom_app", "existing_model_app", "cluster_app"])
def test_checkov_has_no_failed_checks_and_every_skip_is_justified(fixture: str, request: pytest.FixtureRequest) -> None:
    app: Synthesized = request.getfixturevalue(fixture)
    result = subprocess.run(
        [CHECKOV, "-d", str(app.outdir), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    reports = json.loads(result.stdout)
    report = reports[0] if isinstance(reports, list) else reports
    failed = report["results"]["failed_checks"]
    assert not failed, [(check["check_id"], check["resource"]) for check in failed]
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"]["suppress_comment"]) > 40, skipped["check_id"]
    assert report["summary"]["passed"] > 50


@pytest.mark.slow
def test_real_cli_synth_writes_three_templates_offline(tmp_path: Path) -> None:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(variable, None)
    started = time.monotonic()
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(path.name for path in (tmp_path / "cdk.out").glob("*.template.json"))
    assert names == ["pt2-foundation.template.json", "pt2-inference.template.json", "pt2-training.template.json"]
    print(f"npx cdk synth: {elapsed:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("context", "error"),
    [
        (
            ["rootVolumeSize=lots"],
            "error: context 'rootVolumeSize' = 'lots' is invalid: allowed is an integer from 100 to 16384",
        ),
        (
            ["trainingInstanceTyp=g5.xlarge"],
            "error: context 'trainingInstanceTyp' is not a setting of this app; did you mean 'trainingInstanceType'?",
        ),
        (
            ["trainingInstanceCount=2", "trainingInstanceType=g5.xlarge"],
            "error: context 'trainingInstanceCount' = '2' is invalid: g5.xlarge has no EFA network interface, "
            "which training across instances needs; allowed is 1, or a trainingInstanceType with EFA (g4dn.8xlarge, "
            "g4dn.12xlarge, g4dn.16xlarge, g4dn.metal, g5.8xlarge, g5.12xlarge, g5.16xlarge, g5.24xlarge, "
            "g5.48xlarge, g6e.24xlarge, g6e.48xlarge, p3dn.24xlarge, p4d.24xlarge, p4de.24xlarge, p5.48xlarge, "
            "p5e.48xlarge, p5en.48xlarge)",
        ),
    ],
)
def test_real_cli_rejects_a_bad_context_value_with_one_line_and_writes_nothing(
    tmp_path: Path, context: list[str], error: str
) -> None:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    options = [word for value in context for word in ("-c", value)]
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", *options, "--output", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [error]
    assert not list((tmp_path / "out").glob("*.template.json"))
