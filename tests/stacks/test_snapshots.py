"""Snapshots of every template, to make any drift visible in review; test_templates.py says what matters."""

from __future__ import annotations

import json
import re

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.stacks.synthesis import Synthesized

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
# The instance's logical id ends in a hash of its user data (user_data_causes_replacement), which
# embeds the asset hashes.
USER_DATA_HASH = re.compile(r"(TrainingInstance[0-9A-F]{8})[0-9a-f]{16}")


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stack", ["foundation", "training", "inference"])
def test_template_snapshot(default_app: Synthesized, snapshot_json: SnapshotAssertion, stack: str) -> None:
    text = json.dumps(default_app.template_json(stack), sort_keys=True)
    masked = USER_DATA_HASH.sub(r"\1<user-data-hash>", ASSET_HASH.sub("<asset-hash>", text))
    assert json.loads(masked) == snapshot_json
