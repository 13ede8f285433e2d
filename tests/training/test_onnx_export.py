"""The int8 ONNX graph built at package time: any batch and length, the eager model's numbers, int8 weights."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from training.onnx_export import INPUT_NAMES, OUTPUT_NAME, export_fp32, export_int8

# One text; texts of very different lengths, so a padded batch; one longer than the model takes.
BATCHES = [["covid cases"], ["ok", "covid cases are increasing fast", "a much longer text " * 8], ["word " * 300]]


def logits_of(graph: Path, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {name: encoded[name].numpy() for name in INPUT_NAMES})[0])


@pytest.fixture(scope="module")
def eager(tiny_model: Path) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    return AutoModelForSequenceClassification.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(
        tiny_model
    )


@pytest.mark.parametrize("texts", BATCHES)
def test_fp32_graph_gives_the_eager_logits_for_any_batch_and_length(tiny_model, eager, tmp_path, texts):
    """Exported from one padded batch of two; the graph must not have kept that shape."""
    model, tokenizer = eager
    graph = export_fp32(tiny_model, tmp_path / "model.onnx")
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**encoded).logits
    torch.testing.assert_close(logits_of(graph, encoded), expected, atol=1e-5, rtol=1e-4)


def test_int8_graph_has_int8_weights_and_stays_close(tiny_model, eager, tmp_path):
    model, tokenizer = eager
    graph = export_int8(tiny_model, tmp_path / "model.int8.onnx")
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(graph)).graph.node}
    encoded = tokenizer(BATCHES[1], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**encoded).logits
    error = (logits_of(graph, encoded) - expected).abs().max()
    assert 0 < error < 0.05 * expected.abs().max()  # rounded, yet within 5% of the logits' scale
