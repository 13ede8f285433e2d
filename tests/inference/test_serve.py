"""model.tar.gz through the real SageMaker serving toolkit and TorchServe, over loopback HTTP."""

from __future__ import annotations

import json
import re
import socket
import tarfile
import tempfile
from pathlib import Path

import psutil
import pytest

from inference import predict
from inference.serve import LocalEndpoint, free_port, group_members, ping
from training.tiny_model import LABELS

pytestmark = pytest.mark.slow

SENTENCE = b"Covid cases are increasing fast!"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}

# (body, content type, accept) -> the status a client gets over HTTP
BAD_REQUESTS = {
    "unsupported content type": (SENTENCE, "image/png", "application/json", 415),
    "unsupported accept": (SENTENCE, "application/x-text", "text/csv", 406),
    "empty body": (b"", "application/x-text", "application/json", 400),
    "whitespace body": (b"  \n ", "text/plain", "application/json", 400),
    "invalid UTF-8": (b"\xff\xfe", "application/x-text", "application/json", 400),
    "malformed JSON": (b'{"inputs": ', "application/json", "application/json", 400),
    "wrong JSON shape": (b'{"text": "hi"}', "application/json", "application/json", 400),
    "batch over the maximum": (
        json.dumps({"inputs": ["hi"] * 33}).encode(),
        "application/json",
        "application/json",
        413,
    ),
    # The toolkit decodes application/json bodies before the handler runs: a 500 we cannot map.
    "invalid UTF-8 JSON": (b'{"inputs": "\xff"}', "application/json", "application/json", 500),
}


@pytest.fixture(scope="module")
def endpoint(model_tar: Path):
    with LocalEndpoint(model_tar, port=free_port()) as running:
        yield running


def test_ping(endpoint):
    assert ping(endpoint.url) == 200


def test_a_second_endpoint_waits_for_the_first_and_says_so(endpoint, model_tar: Path, capsys):
    """The toolkit allows one TorchServe per machine; a second LocalEndpoint waits instead of breaking it."""
    second = LocalEndpoint(model_tar, port=free_port(), lock_timeout=1)
    try:
        with pytest.raises(RuntimeError, match=r"another local endpoint \(pid \d+\) is still running"):
            second.start()
    finally:
        second.stop()
    assert "waiting for the local endpoint of pid" in capsys.readouterr().err
    assert second.process is None
    assert endpoint.invoke(SENTENCE)[0] == 200


def test_refuses_a_port_in_use(model_tar: Path):
    """Otherwise whatever listens there would answer the readiness check."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="in use"):
            LocalEndpoint(model_tar, port=taken.getsockname()[1]).start()


def test_listens_on_loopback_only(endpoint):
    assert endpoint.process is not None
    listening = [
        connection.laddr
        for pid in group_members(endpoint.process.pid)
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]
    assert any(address.port == endpoint.port for address in listening)
    assert {address.ip for address in listening} <= LOOPBACK
    assert not Path("/etc/sagemaker-ts.properties").exists()  # the toolkit's default, redirected


def test_recipe_sentence(endpoint):
    status, body = endpoint.invoke(SENTENCE)
    assert status == 200
    assert set(json.loads(body)) == {"sentiment", "score"}
    assert json.loads(body)["sentiment"] in LABELS


def test_json_batch(endpoint):
    status, body = endpoint.invoke(json.dumps({"inputs": ["love it", "awful"]}).encode(), "application/json")
    assert status == 200
    assert len(json.loads(body)) == 2


@pytest.mark.parametrize(("body", "content_type", "accept", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_bad_request_status_reaches_the_client(endpoint, body, content_type, accept, status):
    got, reply = endpoint.invoke(body, content_type, accept)
    assert got == status, reply[:300]
    assert reply.strip()


def test_still_answers_after_bad_requests(endpoint):
    for body, content_type, accept, _status in BAD_REQUESTS.values():
        endpoint.invoke(body, content_type, accept)
    assert endpoint.invoke(SENTENCE)[0] == 200
    assert ping(endpoint.url) == 200


def test_predict_client_local(endpoint, capsys):
    assert predict.main([SENTENCE.decode(), "--local", "--url", endpoint.url]) == 0
    assert json.loads(capsys.readouterr().out)["sentiment"] in LABELS
    assert predict.main(["hi", "--local", "--url", endpoint.url, "--content-type", "image/png"]) == 1
    assert "refused the request (415)" in capsys.readouterr().err


def test_stop_leaves_no_process(endpoint):
    assert endpoint.process is not None
    group = endpoint.process.pid
    assert any("java" in psutil.Process(pid).name() for pid in group_members(group))
    workdir = str(endpoint.log_path.parent)
    endpoint.stop()
    assert group_members(group) == []
    assert not _servers_started_in(workdir)


def test_startup_failure_is_reported_and_cleaned_up(model_tar: Path, tmp_path: Path, monkeypatch):
    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(model_tar) as source, tarfile.open(broken, "w:gz") as target:
        for member in source.getmembers():
            if member.name != "config.json":
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server's workdir lands in tmp_path
    failure = _failed_start(broken)
    if "MODEL_LOG - Traceback" not in failure:
        # TorchServe 0.12 stops reading a worker's output as soon as the worker disconnects, so now and then
        # (once in a CI run, under load) the worker's traceback never reaches the log: start it once more.
        failure = _failed_start(broken)
    assert re.search(r"(?s)failed to load: /ping answers 500.*model_type", failure)  # the cause, from the log
    assert not _servers_started_in(str(tmp_path))


def _failed_start(archive: Path) -> str:
    endpoint = LocalEndpoint(archive, port=free_port(), startup_timeout=60)
    with pytest.raises(RuntimeError) as failed:
        endpoint.start()
    assert endpoint.process is None
    return str(failed.value)


def _servers_started_in(workdir: str) -> list[int]:
    """Live TorchServe frontends whose command line names `workdir`: another test run's servers on this
    machine (which LocalEndpoint's lock lets start once this one stopped) are not counted."""
    found = []
    for process in psutil.process_iter():
        try:
            command = " ".join(process.cmdline())
            live = process.status() != psutil.STATUS_ZOMBIE
            if live and "org.pytorch.serve.ModelServer" in command and workdir in command:
                found.append(process.pid)
        except psutil.Error:
            continue
    return found
