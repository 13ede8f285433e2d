"""Exports the fine-tuned classifier to ONNX for the endpoint's int8 mode (ONNX Runtime).

`training.package` runs this for every archive, so `inferenceMode=int8` needs no second packaging.
ONNX is portable: the file is built here (the x86 training instance) and runs on the aarch64
endpoint, where ONNX Runtime's int8 kernels serve it; nothing is compiled there.

The graph comes from `torch.onnx.export` on the torch.export path (the TorchScript tracer is
deprecated), with batch and length dynamic, so one file takes any request. Quantization is ONNX
Runtime's dynamic int8: weights are quantized here, activations per call.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# The handler (inference/inference.py, which cannot import this module) looks for these names.
INT8_FILE = "model.int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
# One scale per output channel of each weight: docs/benchmarks.md has what per-tensor scales cost.
PER_CHANNEL = True


def export_fp32(model_dir: Path, output: Path) -> Path:
    """The model as an fp32 ONNX graph taking (input_ids, attention_mask) of any batch and length."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, return_dict=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Two texts of different lengths: a padded batch, so no size is specialised to 1.
    example = tokenizer(
        ["a short example", "a somewhat longer example for the padding"], padding=True, return_tensors="pt"
    )
    dynamic = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    # The exporter logs a warning for each torchvision operator it cannot register; this model has none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    torch.onnx.export(
        model,
        tuple(example[name] for name in INPUT_NAMES),
        str(output),
        dynamo=True,
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME],
        dynamic_shapes=(dynamic, dynamic),
        external_data=False,
        verbose=False,
    )
    return output


def quantize_int8(fp32: Path, output: Path, per_channel: bool = PER_CHANNEL) -> Path:
    """ONNX Runtime's dynamic int8 quantization of every MatMul/Gemm weight (and the embeddings)."""
    graph = onnx.load(str(fp32))
    # The exporter's intermediate shape annotations trip the quantizer's own shape inference
    # ("Inferred shape and existing shape differ"); it infers them again without them.
    del graph.graph.value_info[:]
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as workdir:
        stripped = Path(workdir) / "model.onnx"
        onnx.save(graph, str(stripped))
        # It advises its pre-processing (shape inference, graph optimisation) on the root logger;
        # the stripped graph needs none.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(stripped, output, weight_type=QuantType.QInt8, per_channel=per_channel)
        finally:
            logging.disable(logging.NOTSET)
    return output


def export_int8(model_dir: Path, output: Path) -> Path:
    """The int8 ONNX file the endpoint's int8 mode loads; the fp32 graph in between is not kept."""
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as workdir:
        return quantize_int8(export_fp32(model_dir, Path(workdir) / "model.onnx"), output)
