"""Hub revisions: resolved to a commit once, recorded, reused by a restart; offline, through the real hub cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import FakeHub
from training import revisions
from training.revisions import RevisionError, RevisionPins, default_revision, resolve


def test_a_branch_resolves_to_the_commit_it_points_at(fake_hub: FakeHub) -> None:
    assert resolve("model", FakeHub.REPO_ID, "main") == FakeHub.FIRST
    fake_hub.move_main(FakeHub.SECOND)
    assert resolve("model", FakeHub.REPO_ID, "main") == FakeHub.SECOND


def test_a_dataset_branch_resolves_through_its_card(fake_hub: FakeHub) -> None:
    repo = fake_hub.cache / "datasets--tiny-org--tweets"
    (repo / "snapshots" / FakeHub.SECOND).mkdir(parents=True)
    (repo / "snapshots" / FakeHub.SECOND / "README.md").write_text("# tweets\n")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FakeHub.SECOND)
    assert resolve("dataset", "tiny-org/tweets", "main") == FakeHub.SECOND


def test_a_commit_is_its_own_answer_without_the_hub() -> None:
    assert resolve("model", "nobody/nothing", "a" * 40) == "a" * 40


@pytest.mark.parametrize(
    ("repo_id", "revision"), [("tiny-org/unknown", "main"), (FakeHub.REPO_ID, "v9"), ("/not/here", "main")]
)
def test_what_cannot_be_resolved_is_named(fake_hub: FakeHub, repo_id: str, revision: str) -> None:
    with pytest.raises(RevisionError, match=f"^model {repo_id} at revision {revision}: "):
        resolve("model", repo_id, revision)


def test_the_record_outlives_a_moved_branch_and_no_resume_starts_a_new_one(tmp_path: Path, fake_hub: FakeHub) -> None:
    record = tmp_path / "checkpoints" / "hub-revisions.json"
    assert RevisionPins(record, reuse=True).commit("model", FakeHub.REPO_ID, "main") == FakeHub.FIRST
    assert json.loads(record.read_text()) == {f"model {FakeHub.REPO_ID}@main": FakeHub.FIRST}
    fake_hub.move_main(FakeHub.SECOND)
    assert RevisionPins(record, reuse=True).commit("model", FakeHub.REPO_ID, "main") == FakeHub.FIRST
    assert RevisionPins(record, reuse=False).commit("model", FakeHub.REPO_ID, "main") == FakeHub.SECOND
    assert json.loads(record.read_text()) == {f"model {FakeHub.REPO_ID}@main": FakeHub.SECOND}


def test_pinned_defaults_are_commits_and_apply_only_to_their_own_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(revisions.COMMIT_SHA.fullmatch(commit) for commit in revisions.PINNED.values())
    monkeypatch.setitem(revisions.PINNED, FakeHub.REPO_ID, FakeHub.FIRST)
    assert default_revision(FakeHub.REPO_ID) == FakeHub.FIRST
    assert default_revision("someone/else") == "main"
