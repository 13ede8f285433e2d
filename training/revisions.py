"""Which commits of the hub's model and dataset a run reads, and the same ones again after a restart.

A branch such as `main` moves, so a resumed run could load another tokenizer or dataset than the start
it resumes. Each hub input is therefore resolved to a commit SHA once per run and recorded beside the
checkpoints (the bootstrap syncs that folder to S3); a restart reuses the record. Given a commit SHA,
transformers and huggingface_hub serve files from the hub cache without asking the hub, so a restart on
an instance whose cache is kept (the bootstrap mounts one) downloads nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError

RepoType = Literal["model", "dataset"]

RECORD_NAME = "hub-revisions.json"
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
# A file every repository of the type has. The cache keeps a download under snapshots/<commit>/, so
# fetching it at a revision tells the commit; `datasets` resolves its revisions the same way.
PROBE_FILES: dict[RepoType, str] = {"model": "config.json", "dataset": "README.md"}

# Commit SHAs of the default model and dataset, looked up once and recorded here. Empty: this code was
# written where the hub could not be reached, so there was nothing to look up and no SHA is made up.
# Until it is filled in, each run pins the commit `main` has at its first start, and metrics.json's
# `setup` names it. To fill it in or refresh it (needs the hub), run
#   python -c "from huggingface_hub import HfApi; api = HfApi()
#   print(api.model_info('cardiffnlp/twitter-roberta-base-2021-124m').sha)
#   print(api.dataset_info('cardiffnlp/tweet_eval').sha)"
# and record {"cardiffnlp/twitter-roberta-base-2021-124m": "<sha>", "cardiffnlp/tweet_eval": "<sha>"}.
PINNED: dict[str, str] = {}


class RevisionError(ValueError):
    """A hub input cannot be resolved to a commit; the message names it and says why."""


def default_revision(repo_id: str) -> str:
    return PINNED.get(repo_id, "main")


def is_local(name: str) -> bool:
    """A path on this machine rather than a hub id: it has no revisions."""
    return Path(name).exists()


def resolve(repo_type: RepoType, repo_id: str, revision: str) -> str:
    """The commit SHA that `revision` (a branch, tag or commit) of the hub repository points at now."""
    if COMMIT_SHA.fullmatch(revision):
        return revision
    try:
        probe = hf_hub_download(repo_id, PROBE_FILES[repo_type], repo_type=repo_type, revision=revision)
    except (HfHubHTTPError, EntryNotFoundError, HFValidationError) as error:
        reason = str(error).strip().splitlines()[0]
        raise RevisionError(f"{repo_type} {repo_id} at revision {revision}: {reason}") from None
    return Path(probe).parent.name


class RevisionPins:
    """Hub revisions resolved once per run and recorded in `record`; a restart reads them back.

    Only the main process should call `commit`: it writes the record, and the other ranks must use
    its answer, not resolve a branch again a moment later.
    """

    def __init__(self, record: Path, reuse: bool) -> None:
        self.record = record
        self.commits: dict[str, str] = json.loads(record.read_text()) if reuse and record.is_file() else {}

    def commit(self, repo_type: RepoType, repo_id: str, revision: str) -> str:
        key = f"{repo_type} {repo_id}@{revision}"
        if key not in self.commits:
            self.commits[key] = resolve(repo_type, repo_id, revision)
            self._save()
        return self.commits[key]

    def _save(self) -> None:
        """Through a temporary file: a reboot mid-write must not leave a record that cannot be read."""
        self.record.parent.mkdir(parents=True, exist_ok=True)
        partial = self.record.with_name(self.record.name + ".partial")
        partial.write_text(json.dumps(self.commits, indent=2, sort_keys=True) + "\n")
        partial.replace(self.record)
