"""The handler in-process on the tiny model, called the way the serving toolkit calls it."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from sagemaker_inference.errors import GenericInferenceToolkitError
from transformers import AutoConfig, AutoModelForSequenceClassification

from inference import inference as handler
from training import onnx_export
from training.tiny_model import LABELS

SENTENCE = "Covid cases are increasing fast!"


def answer(classifier, body, content_type="application/x-text", accept="application/json"):
    """input_fn -> predict_fn -> output_fn, as the toolkit's default transform_fn chains them."""
    texts = handler.input_fn(body, content_type)
    reply, reply_type = handler.output_fn(handler.predict_fn(texts, classifier), accept)
    assert reply_type == "application/json"
    return json.loads(reply)


def status_of(classifier, body, content_type="application/x-text", accept="application/json") -> int:
    with pytest.raises(GenericInferenceToolkitError) as raised:
        answer(classifier, body, content_type, accept)
    assert raised.value.message  # what the client reads first
    return int(raised.value.status_code)


def assert_prediction(result) -> None:
    assert set(result) == {"sentiment", "score"}
    assert result["sentiment"] in LABELS
    assert 1 / len(LABELS) <= result["score"] <= 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (SENTENCE.encode(), "application/x-text"),
        (bytearray(SENTENCE.encode()), "application/x-text"),
        (SENTENCE.encode(), "text/plain"),
        (SENTENCE.encode(), "Text/Plain; charset=utf-8"),
        # the toolkit decodes application/json itself; with parameters it passes bytes
        (json.dumps({"inputs": SENTENCE}), "application/json"),
        (json.dumps({"inputs": SENTENCE}).encode(), "application/json; charset=utf-8"),
    ],
)
def test_one_text_gives_the_recipes_shape(classifier, body, content_type):
    assert_prediction(answer(classifier, body, content_type))


def test_same_text_same_answer_whatever_the_content_type(classifier):
    as_text = answer(classifier, SENTENCE.encode())
    as_json = answer(classifier, json.dumps({"inputs": [SENTENCE]}), "application/json")
    assert as_json[0]["sentiment"] == as_text["sentiment"]
    assert as_json[0]["score"] == pytest.approx(as_text["score"], abs=1e-5)


def test_batch_gives_one_answer_per_text_in_order(model_dir, monkeypatch, keep_threads):
    """In fp32: int8 quantizes activations with one scale per call, so batch-mates move scores a little."""
    monkeypatch.setenv("INFERENCE_MODE", "fp32")
    classifier = handler.model_fn(str(model_dir))
    texts = ["love this", SENTENCE, "monday meeting report"]
    batch = answer(classifier, json.dumps({"inputs": texts}), "application/json")
    singles = [answer(classifier, text.encode()) for text in texts]
    assert [item["sentiment"] for item in batch] == [item["sentiment"] for item in singles]
    assert [item["score"] for item in batch] == pytest.approx([item["score"] for item in singles], abs=1e-5)


def test_text_longer_than_the_model_is_truncated(classifier):
    assert classifier.max_length == 64
    long_text = " ".join(["covid cases are increasing fast"] * 200)
    assert len(classifier.tokenizer(long_text)["input_ids"]) > 500
    assert_prediction(answer(classifier, long_text.encode()))


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/*", "application/json; charset=utf-8", "text/html, */*"]
)
def test_acceptable_accept_headers(classifier, accept):
    assert_prediction(answer(classifier, SENTENCE.encode(), accept=accept))


BAD_REQUESTS = {
    "unsupported content type": (b"x", "image/png", "application/json", 415),
    "no content type": (b"x", None, "application/json", 415),
    "form content type": (b"x", "application/x-www-form-urlencoded", "application/json", 415),
    "unsupported accept": (SENTENCE.encode(), "application/x-text", "text/csv", 406),
    "empty body": (b"", "application/x-text", "application/json", 400),
    "no body": (None, "application/x-text", "application/json", 400),
    "whitespace body": (b" \n\t ", "text/plain", "application/json", 400),
    "invalid UTF-8": (b"\xff\xfe covid", "application/x-text", "application/json", 400),
    "invalid UTF-8 JSON with charset": (b'{"inputs": "\xff"}', "application/json; charset=utf-8", "*/*", 400),
    "malformed JSON": ('{"inputs": ', "application/json", "application/json", 400),
    "JSON without inputs": ('{"text": "hi"}', "application/json", "application/json", 400),
    "JSON list at top level": ('["hi"]', "application/json", "application/json", 400),
    "JSON null": ("null", "application/json", "application/json", 400),
    "inputs a number": ('{"inputs": 5}', "application/json", "application/json", 400),
    "inputs empty list": ('{"inputs": []}', "application/json", "application/json", 400),
    "inputs blank string": ('{"inputs": "  "}', "application/json", "application/json", 400),
    "inputs with a number": ('{"inputs": ["hi", 3]}', "application/json", "application/json", 400),
    "inputs with a blank": ('{"inputs": ["hi", ""]}', "application/json", "application/json", 400),
    "batch over the maximum": (
        json.dumps({"inputs": ["hi"] * (handler.DEFAULT_MAX_BATCH_SIZE + 1)}),
        "application/json",
        "application/json",
        413,
    ),
}


@pytest.mark.parametrize(("body", "content_type", "accept", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_bad_request_gets_its_status(classifier, body, content_type, accept, status):
    assert status_of(classifier, body, content_type, accept) == status


def test_max_batch_size_comes_from_the_environment(classifier, monkeypatch):
    monkeypatch.setenv("MAX_BATCH_SIZE", "2")
    assert len(answer(classifier, json.dumps({"inputs": ["a", "b"]}), "application/json")) == 2
    assert status_of(classifier, json.dumps({"inputs": ["a", "b", "c"]}), "application/json") == 413


def test_labels_come_from_the_model_config(model_dir, tmp_path, keep_threads):
    config = AutoConfig.from_pretrained(model_dir)
    renamed = {0: "bad", 1: "meh", 2: "good"}
    config.id2label, config.label2id = renamed, {v: k for k, v in renamed.items()}
    AutoModelForSequenceClassification.from_pretrained(model_dir, config=config).save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "model.int8.onnx"):
        (tmp_path / name).write_bytes((Path(model_dir) / name).read_bytes())
    result = answer(handler.model_fn(str(tmp_path)), SENTENCE.encode())
    assert result["sentiment"] in renamed.values()


def test_threads_respect_omp_num_threads(model_dir, monkeypatch, keep_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    handler.model_fn(str(model_dir))
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    ("environment", "threads"),
    [
        # the stack's plan on ml.c7g.4xlarge, after an entrypoint overwrote the toolkit's worker count
        ({"SAGEMAKER_TS_MIN_WORKERS": "4", "SAGEMAKER_TS_MAX_WORKERS": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "16"}, 4),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, 4),
        ({"SAGEMAKER_TS_BATCH_SIZE": "1", "SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, 16),  # the toolkit's min: 1
        ({}, 1),  # TorchServe's default: one worker per core
    ],
)
def test_threads_split_the_cores_between_the_workers_torchserve_runs(
    model_dir, monkeypatch, keep_threads, environment, threads
):
    for name in [name for name in os.environ if name == "OMP_NUM_THREADS" or name.startswith("SAGEMAKER_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler.os, "sched_getaffinity", lambda _pid: set(range(16)))
    handler.model_fn(str(model_dir))
    assert torch.get_num_threads() == threads


def test_a_model_directory_without_weights_fails_to_load_with_the_reason(
    model_dir, tmp_path, monkeypatch, keep_threads
):
    monkeypatch.setenv("INFERENCE_MODE", "fp32")  # the PyTorch modes read model.safetensors
    broken = copy_without(model_dir, tmp_path, {"model.safetensors"})
    with pytest.raises(
        handler.ModelLoadError, match=r"cannot load the fp32 model from .*no file named model.safetensors"
    ):
        handler.model_fn(str(broken))


def test_a_model_directory_without_tokenizer_fails_its_self_test(model_dir, tmp_path, keep_threads):
    """transformers 5 would build a tokenizer anyway, one that knows no word: the endpoint must not serve it."""
    broken = copy_without(model_dir, tmp_path, {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"})
    with pytest.raises(handler.ModelLoadError, match="lacks its tokenizer files"):
        handler.model_fn(str(broken))


def test_a_self_test_prediction_that_fails_fails_the_load(model_dir, monkeypatch, keep_threads):
    def broken_predict(data, model):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(handler, "predict_fn", broken_predict)
    with pytest.raises(handler.ModelLoadError, match=r"self-test prediction failed: RuntimeError\('no kernel"):
        handler.model_fn(str(model_dir))


def test_a_model_that_answers_nan_fails_its_self_test(model_dir, tmp_path, monkeypatch, keep_threads):
    monkeypatch.setenv("INFERENCE_MODE", "fp32")  # the weights saved here, not the packaged int8 graph
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.out_proj.bias.fill_(float("nan"))
    broken = copy_without(model_dir, tmp_path, {"model.safetensors"})
    model.save_pretrained(broken)
    with pytest.raises(handler.ModelLoadError, match="scored nan: the weights are broken"):
        handler.model_fn(str(broken))


def copy_without(model_dir, tmp_path, names):
    copy = tmp_path / "model"
    copy.mkdir()
    for path in Path(model_dir).iterdir():
        if path.name not in names:
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


def test_int8_mode_serves_the_packaged_onnx_graph(model_dir, monkeypatch, keep_threads):
    monkeypatch.setenv("INFERENCE_MODE", "int8")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    classifier = handler.model_fn(str(model_dir))
    assert classifier.mode == "int8"
    texts = ["ok", SENTENCE, "a much longer text " * 20]
    batch = answer(classifier, json.dumps({"inputs": texts}), "application/json")
    eager = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    encoded = classifier.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        expected = eager(**encoded).logits.softmax(dim=-1).max(dim=-1).values
    # int8 rounding moves the tiny model's near-uniform scores by a fraction of a percent
    assert [item["score"] for item in batch] == pytest.approx(expected.tolist(), abs=1e-3)


def test_int8_mode_without_the_onnx_graph_names_the_file_and_the_fix(model_dir, tmp_path, monkeypatch):
    older = Path(shutil.copytree(model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("*.onnx")))
    monkeypatch.delenv("INFERENCE_MODE", raising=False)  # int8 is the default
    with pytest.raises(handler.ModelLoadError, match=r"model\.int8\.onnx .*python -m training\.package"):
        handler.model_fn(str(older))


def test_the_handler_looks_for_the_file_the_package_step_writes():
    assert handler.ONNX_INT8_FILE == onnx_export.INT8_FILE


@pytest.mark.parametrize("mode", ["fp32", "bf16", "int8"])
def test_no_mode_uses_a_deprecated_torch_api(model_dir, monkeypatch, keep_threads, mode):
    """torch 2.13 deprecates torch.jit.trace/freeze and the quantized tensors behind torch.ao's
    quantize_dynamic; the modes' paths must not warn (with the torchvision and other unrelated noise
    the exporter and transformers emit allowed)."""
    monkeypatch.setenv("INFERENCE_MODE", mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer(handler.model_fn(str(model_dir)), SENTENCE.encode())
    deprecated = [str(w.message) for w in caught if re.search(r"torch\.jit|quantiz|TorchScript", str(w.message))]
    assert deprecated == []


@pytest.mark.parametrize("native", [True, False])
def test_bf16_mode_only_where_the_cpu_has_it(model_dir, monkeypatch, keep_threads, native):
    monkeypatch.setenv("INFERENCE_MODE", "BF16")
    monkeypatch.setattr(handler, "_cpu_has_bf16", lambda: native)
    classifier = handler.model_fn(str(model_dir))
    assert classifier.mode == ("bf16" if native else "fp32")
    assert_prediction(answer(classifier, SENTENCE.encode()))


def test_unknown_mode_fails_at_load_time(model_dir, monkeypatch):
    monkeypatch.setenv("INFERENCE_MODE", "fp8")
    with pytest.raises(ValueError, match="INFERENCE_MODE"):
        handler.model_fn(str(model_dir))
