"""SageMaker handler for the tweet sentiment classifier (ships alone as `code/inference.py`).

The SageMaker PyTorch serving toolkit imports this module inside each TorchServe worker and calls
`model_fn` once, then `input_fn` -> `predict_fn` -> `output_fn` per request. It may only import
what the inference image and `code/requirements.txt` provide, never this project's modules.

Requests: `application/x-text` or `text/plain` (one UTF-8 text), or `application/json` with
`{"inputs": "one text"}` or `{"inputs": ["a", "b", ...]}`. Replies are `application/json`:
`{"sentiment": "negative", "score": 0.85}`, or a list of those for a JSON list.

Bad requests raise the toolkit's `GenericInferenceToolkitError`, whose status code the toolkit
hands to TorchServe; any other exception would reach the client as a bare 500.

Health: `model_fn` ends with one internal prediction and raises `ModelLoadError`, naming the problem
(no weights, no tokenizer, a failed prediction), when the model cannot serve. The message lands in
the server log (the endpoint's log group). The archive's TorchServe config does not retry such a
worker (maxRetryTimeoutInSec 0, training/package.py), so /ping answers 500 from then on.

Environment (set on the SageMaker Model):
- `INFERENCE_MODE`: `int8` (default: ONNX Runtime on `model.int8.onnx`, which `training.package`
  exports and quantizes into every archive), `fp32` (PyTorch eager) or `bf16` (PyTorch autocast;
  falls back to fp32 on CPUs without native bf16). docs/benchmarks.md has the measurements.
- `MAX_BATCH_SIZE`: most texts in one JSON request (default 32); more is refused with 413.
- `OMP_NUM_THREADS`: torch threads per worker; by default the cores are split evenly between the
  workers TorchServe runs: `SAGEMAKER_TS_MIN_WORKERS` when the serving toolkit's `SAGEMAKER_TS_*`
  settings are present (they become the model's own worker count and outrank the rest), else
  `SAGEMAKER_MODEL_SERVER_WORKERS`, else one per core (`_torchserve_workers`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from sagemaker_inference.errors import GenericInferenceToolkitError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

logger = logging.getLogger(__name__)

TEXT_CONTENT_TYPES = frozenset({"application/x-text", "text/plain"})
JSON_CONTENT_TYPE = "application/json"
ACCEPTABLE = frozenset({JSON_CONTENT_TYPE, "application/*", "*/*"})
DEFAULT_MAX_BATCH_SIZE = 32
SELF_TEST_TEXT = "Covid cases are increasing fast!"
# Written by training.onnx_export (which this module, shipped alone, cannot import).
ONNX_INT8_FILE = "model.int8.onnx"

# (input_ids, attention_mask) -> logits, called under torch.inference_mode().
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ModelLoadError(RuntimeError):
    """The archive's model cannot serve; the message says why, for the server log."""


@dataclass(frozen=True)
class Classifier:
    """What `model_fn` loads once per worker and every `predict_fn` call reuses."""

    forward: Forward
    tokenizer: Any
    labels: dict[int, str]
    max_length: int
    mode: str


@dataclass(frozen=True)
class Texts:
    """A decoded request: the texts and whether the client sent a list (and so gets a list back)."""

    texts: list[str]
    batch: bool


def model_fn(model_dir: str) -> Classifier:
    """Loads model and tokenizer from the unpacked model.tar.gz, set up for fast CPU inference."""
    mode = os.environ.get("INFERENCE_MODE", "int8").lower()
    if mode not in PREPARERS:
        raise ValueError(f"INFERENCE_MODE={mode!r}: expected one of {', '.join(PREPARERS)}")
    threads = _configure_threads()
    tokenizer = _loaded("tokenizer", AutoTokenizer.from_pretrained, model_dir)
    config = _loaded("config", AutoConfig.from_pretrained, model_dir)
    if mode == "bf16" and not _cpu_has_bf16():
        logger.warning("INFERENCE_MODE=bf16 but this CPU has no native bf16; serving fp32")
        mode = "fp32"
    classifier = Classifier(
        forward=_loaded(f"{mode} model", PREPARERS[mode], Path(model_dir), threads),
        tokenizer=tokenizer,
        labels={int(index): label for index, label in config.id2label.items()},
        max_length=_max_length(tokenizer, config),
        mode=mode,
    )
    _self_test(classifier)
    logger.info(
        "loaded %s: mode=%s threads=%d max_length=%d labels=%s",
        model_dir,
        mode,
        threads,
        classifier.max_length,
        list(classifier.labels.values()),
    )
    return classifier


def _loaded(what: str, load: Callable[..., Any], model_dir: str | Path, *args: Any) -> Any:
    try:
        return load(model_dir, *args)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the {what} from {model_dir}: {error}") from error


def _self_test(classifier: Classifier) -> None:
    """One prediction before the worker reports ready. A directory without tokenizer files still
    yields a tokenizer in transformers 5, one that maps every word to <unk>: refuse that too."""
    tokenizer = classifier.tokenizer
    ids = tokenizer(SELF_TEST_TEXT, add_special_tokens=False)["input_ids"]
    if set(ids) <= {tokenizer.unk_token_id}:
        raise ModelLoadError(
            f"the tokenizer maps {SELF_TEST_TEXT!r} to unknown tokens only: the model directory lacks its "
            "tokenizer files (tokenizer.json or vocab.json/merges.txt)"
        )
    try:
        result = predict_fn(Texts([SELF_TEST_TEXT], batch=False), classifier)
    except Exception as error:
        raise ModelLoadError(f"the self-test prediction failed: {error!r}") from error
    assert isinstance(result, dict)  # one text in, one answer out
    if not math.isfinite(result["score"]):
        raise ModelLoadError(f"the self-test prediction scored {result['score']}: the weights are broken")


def input_fn(body: bytes | bytearray | str | None, content_type: str | None) -> Texts:
    """Turns the request body into texts, refusing with a 4xx what the model cannot answer."""
    media_type = _media_type(content_type)
    if media_type in TEXT_CONTENT_TYPES:
        return Texts([_non_blank(_decode(body), "the request body")], batch=False)
    if media_type == JSON_CONTENT_TYPE:
        return _parse_json(_decode(body))
    supported = ", ".join(sorted(TEXT_CONTENT_TYPES | {JSON_CONTENT_TYPE}))
    raise GenericInferenceToolkitError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {content_type!r} is not supported; use one of {supported}",
    )


def predict_fn(data: Texts, model: Classifier) -> dict[str, Any] | list[dict[str, Any]]:
    """Classifies the texts in one forward pass; texts beyond the model's length are truncated."""
    encoded = model.tokenizer(
        data.texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model.forward(encoded["input_ids"], encoded["attention_mask"])
    scores, indices = logits.float().softmax(dim=-1).max(dim=-1)
    results = [
        {"sentiment": model.labels[index], "score": score}
        for index, score in zip(indices.tolist(), scores.tolist(), strict=True)
    ]
    return results if data.batch else results[0]


def output_fn(prediction: dict[str, Any] | list[dict[str, Any]], accept: str | None) -> tuple[str, str]:
    """Serializes to JSON, the only format offered; the toolkit maps a missing or */* Accept to it."""
    if accept and not ACCEPTABLE & {_media_type(part) for part in accept.split(",")}:
        raise GenericInferenceToolkitError(
            HTTPStatus.NOT_ACCEPTABLE, f"Accept {accept!r} is not supported; use {JSON_CONTENT_TYPE}"
        )
    return json.dumps(prediction), JSON_CONTENT_TYPE


def _parse_json(text: str) -> Texts:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad_request(f"malformed JSON: {error}") from None
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if isinstance(inputs, str):
        return Texts([_non_blank(inputs, '"inputs"')], batch=False)
    if not isinstance(inputs, list) or not inputs:
        raise _bad_request('expected a JSON object {"inputs": "text"} or {"inputs": ["text", ...]}')
    limit = int(os.environ.get("MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE))
    if len(inputs) > limit:
        raise GenericInferenceToolkitError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{len(inputs)} texts in one request; at most {limit} (MAX_BATCH_SIZE), split the batch",
        )
    for index, item in enumerate(inputs):
        if not isinstance(item, str):
            raise _bad_request(f'"inputs"[{index}] is {type(item).__name__}; expected a string')
        _non_blank(item, f'"inputs"[{index}]')
    return Texts(inputs, batch=True)


def _decode(body: bytes | bytearray | str | None) -> str:
    """The toolkit decodes JSON bodies itself; text bodies arrive as bytes (or bytearray)."""
    if isinstance(body, str):
        return body
    try:
        return bytes(body or b"").decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad_request(f"the request body is not valid UTF-8: {error}") from None


def _non_blank(text: str, what: str) -> str:
    if not text.strip():
        raise _bad_request(f"{what} is empty; send the text to classify")
    return text


def _media_type(header: str | None) -> str:
    """`Text/Plain; charset=utf-8` -> `text/plain`."""
    return (header or "").split(";")[0].strip().lower()


def _bad_request(message: str) -> GenericInferenceToolkitError:
    return GenericInferenceToolkitError(HTTPStatus.BAD_REQUEST, message)


def _eager(model_dir: Path, threads: int) -> Forward:
    """PyTorch fp32 as saved by training: the reference the other modes are measured against."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, return_dict=False).eval()
    return lambda input_ids, attention_mask: model(input_ids, attention_mask)[0]


def _bf16(model_dir: Path, threads: int) -> Forward:
    """bf16 autocast over the fp32 weights: matmuls in bf16, softmax and layer norms in fp32."""
    fp32 = _eager(model_dir, threads)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(input_ids, attention_mask)

    return forward


def _onnx_int8(model_dir: Path, threads: int) -> Forward:
    """ONNX Runtime on the int8 graph that training.package exported and quantized."""
    path = model_dir / ONNX_INT8_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"INFERENCE_MODE=int8 needs {ONNX_INT8_FILE} in the model archive; this archive has none. "
            "Package the model again with `python -m training.package`, which exports it."
        )
    return onnx_runtime(path, threads)


def onnx_runtime(path: Path, threads: int) -> Forward:
    """An ONNX Runtime session on `path` with the worker's threads, which do not spin between requests:
    the TorchServe frontend and the other workers need those cores (docs/benchmarks.md)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return torch.from_numpy(session.run(["logits"], feed)[0])

    return forward


# INFERENCE_MODE -> how model_fn prepares the model: (model directory, torch threads) -> Forward.
PREPARERS: dict[str, Callable[[Path, int], Forward]] = {"fp32": _eager, "bf16": _bf16, "int8": _onnx_int8}


def _configure_threads() -> int:
    """Without OMP_NUM_THREADS, split the cores between workers so they do not oversubscribe."""
    if "OMP_NUM_THREADS" in os.environ:
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        cores = len(os.sched_getaffinity(0))
        threads = max(1, cores // _torchserve_workers(cores))
    torch.set_num_threads(threads)
    return threads


def _torchserve_workers(cores: int) -> int:
    """The worker count TorchServe starts, decided as the serving toolkit decides it
    (sagemaker_pytorch_serving_container.torchserve): any SAGEMAKER_TS_* setting makes it write the
    model's own minWorkers (default 1), which outranks default_workers_per_model, i.e.
    SAGEMAKER_MODEL_SERVER_WORKERS; without either, TorchServe starts one worker per core."""
    if any(name.startswith("SAGEMAKER_TS_") for name in os.environ):
        return int(os.environ.get("SAGEMAKER_TS_MIN_WORKERS") or 1)
    return int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or cores)


def _max_length(tokenizer: Any, config: Any) -> int:
    """A tokenizer saved without model_max_length reports a huge sentinel; the position
    embeddings bound it (RoBERTa spends two of them on its padding offset)."""
    positions = getattr(config, "max_position_embeddings", None)
    limit = positions - 2 if positions else tokenizer.model_max_length
    return int(min(tokenizer.model_max_length, limit))


def _cpu_has_bf16() -> bool:
    """Native bf16 (AVX512-BF16/AMX on x86, BF16 on Graviton3+); elsewhere it is emulated, slower."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
