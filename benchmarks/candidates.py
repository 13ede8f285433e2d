"""Fast-path candidates that `make bench-serve` measures beside the handler's own modes, and that lost.

Each is an `INFERENCE_MODE` preparer with the handler's signature: (model directory, torch threads) ->
forward(input_ids, attention_mask) -> logits. In-process the benchmark adds CANDIDATES to the handler's
PREPARERS; for the real toolkit, which loads one `code/inference.py`, `candidate_handler_source()` in
benchmarks/serve.py appends this module to the handler's source. So it imports only what the endpoint
image has, takes the handler's names through the one import line marked below, and has no
`from __future__` import. docs/benchmarks.md says why each lost.
"""

from collections.abc import Callable
from pathlib import Path

import torch
import torch._inductor.config
from transformers import AutoModelForSequenceClassification

from inference.inference import Forward, onnx_runtime  # the handler's names; this line is dropped there

HANDLER_IMPORT = "from inference.inference import"
# The benchmark exports these beside the weights (training.onnx_export).
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_PER_TENSOR_FILE = "model.int8-per-tensor.onnx"


def compiled(model_dir: Path, threads: int) -> Forward:
    """torch.compile (inductor, C++ on CPU) of the fp32 model with frozen weights, compiled in model_fn.

    Inductor specialises sizes 0 and 1, so a single text and a batch are two graphs: both are
    compiled here, before the worker takes traffic, rather than on the first requests."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, return_dict=False).eval()
    torch._inductor.config.freezing = True
    graph = torch.compile(model, dynamic=True)
    with torch.inference_mode():
        for batch in (1, 2):
            graph(torch.full((batch, 8), 5), torch.ones(batch, 8, dtype=torch.long))
    return lambda input_ids, attention_mask: graph(input_ids, attention_mask)[0]


def onnx_fp32(model_dir: Path, threads: int) -> Forward:
    """ONNX Runtime on the fp32 graph, with the int8 mode's session settings."""
    return onnx_runtime(model_dir / ONNX_FP32_FILE, threads)


def onnx_int8_per_tensor(model_dir: Path, threads: int) -> Forward:
    """The int8 mode with one scale per weight tensor instead of one per output channel."""
    return onnx_runtime(model_dir / ONNX_INT8_PER_TENSOR_FILE, threads)


CANDIDATES: dict[str, Callable[[Path, int], Forward]] = {
    "compile": compiled,
    "onnx-fp32": onnx_fp32,
    "onnx-int8-per-tensor": onnx_int8_per_tensor,
}
