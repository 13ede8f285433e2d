"""A model trained on a user's own labels answers with the user's class names through the real serving toolkit.

Each case is the user's path in small: a CSV whose label column holds the names, `training.train --labels`
starting from the 3-label tiny model (so the classification head is rebuilt for the new count), the
archive the instance packages, TorchServe behind the SageMaker toolkit, a JSON batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inference.serve import LocalEndpoint, free_port
from tests.inference.conftest import CODE_DIR
from training import train
from training.package import build_model_archive
from training.tiny_model import CLASS_WORDS, write_dataset

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    labels: tuple[str, ...]
    rows_per_label: int
    epochs: int


CASES = {
    "two classes": Case(("complaint", "praise"), 60, 3),
    "five star ratings named 1 to 5": Case(("1", "2", "3", "4", "5"), 100, 4),
}


@pytest.fixture(scope="module", params=list(CASES.values()), ids=list(CASES))
def served(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Case, LocalEndpoint]]:
    case: Case = request.param
    root = tmp_path_factory.mktemp("own-labels")
    data = write_dataset(
        root / "data",
        train=case.rows_per_label * len(case.labels),
        validation=10 * len(case.labels),
        labels=case.labels,
        names=True,
    )
    train.main(
        [
            *("--output-dir", str(root / "out"), "--model-name", str(model_dir), "--labels", ",".join(case.labels)),
            *("--train-file", str(data / "train.csv"), "--validation-file", str(data / "validation.csv")),
            *("--epochs", str(case.epochs), "--global-batch-size", "32", "--learning-rate", "1e-2", "--no-compile"),
        ]
    )
    archive = build_model_archive(root / "out" / "model", CODE_DIR, root / "model.tar.gz")
    with LocalEndpoint(archive, port=free_port()) as endpoint:
        yield case, endpoint


def test_every_class_is_answered_by_its_name(served: tuple[Case, LocalEndpoint]) -> None:
    case, endpoint = served
    texts = [" ".join(CLASS_WORDS[index][:3]) for index in range(len(case.labels))]
    status, body = endpoint.invoke(json.dumps({"inputs": texts}).encode(), "application/json")
    assert status == 200, body
    answers = json.loads(body)
    assert [answer["sentiment"] for answer in answers] == list(case.labels)
    assert all(1 / len(case.labels) < answer["score"] <= 1 for answer in answers)
