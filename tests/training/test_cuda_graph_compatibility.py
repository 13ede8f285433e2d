"""The training step holds nothing that keeps CUDA graphs off, checked on CPU before a GPU run relies on it.

torch replays a compiled graph as a CUDA graph only if the graph neither mutates its inputs nor holds an
op a CUDA graph cannot replay (.item(), nonzero, ...); otherwise it runs without one and says so in a
log line only. Here Trainer's own training step is traced through AOTAutograd, as --compile-mode
cudagraphs and reduce-overhead trace it, and each forward and backward graph is put through torch's own
checks, all but the one for the device: on CPU that one always answers "cpu device".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.backends.cudagraphs import check_for_mutation_ignore_cuda_graph_managed_tensor
from torch._dynamo.backends.debugging import boxed_nop
from torch._inductor.utils import count_tangents, get_first_incompatible_cudagraph_node, num_fw_fixed_arguments

from training.arguments import parse_args
from training.train import build_job


class GraphCheck:
    """A torch.compile backend that records, per AOTAutograd graph, why CUDA graphs would skip it."""

    def __init__(self) -> None:
        self.graphs: list[tuple[str, str | None, str | None]] = []

    def __call__(self, module: torch.fx.GraphModule, inputs: list[Any]) -> Any:
        def forward(graph: torch.fx.GraphModule, graph_inputs: list[Any]) -> Any:
            return self._check("forward", graph, graph_inputs, num_fw_fixed_arguments(len(inputs), len(graph_inputs)))

        def backward(graph: torch.fx.GraphModule, graph_inputs: list[Any]) -> Any:
            return self._check("backward", graph, graph_inputs, count_tangents(graph))

        return aot_autograd(fw_compiler=forward, bw_compiler=backward)(module, inputs)

    def _check(self, kind: str, graph: torch.fx.GraphModule, inputs: list[Any], fixed: int) -> Callable[..., Any]:
        mutation = check_for_mutation_ignore_cuda_graph_managed_tensor(graph, fixed)
        incompatible = get_first_incompatible_cudagraph_node(graph)
        self.graphs.append((kind, mutation, incompatible.format_node() if incompatible else None))
        return boxed_nop(graph, inputs)


def test_the_training_step_holds_nothing_that_keeps_cuda_graphs_off(
    tmp_path: Path, train_argv: Callable[..., list[str]]
) -> None:
    trainer = build_job(parse_args(train_argv(tmp_path, "--pad-to-multiple-of", "32", "--no-compile"))).trainer
    model = trainer.accelerator.prepare_model(trainer.model)  # wrapped in bf16 autocast, as Trainer's is
    check = GraphCheck()
    compiled = cast(torch.nn.Module, torch.compile(model, backend=check))  # an OptimizedModule
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop before each step
    for step, inputs in enumerate(itertools.islice(trainer.get_train_dataloader(), 3)):
        trainer.training_step(compiled, inputs)
        if step == 0:  # one forward and one backward graph: no graph break splits the step
            assert [kind for kind, _, _ in check.graphs] == ["forward", "backward"]
    assert check.graphs and all(mutation is None and op is None for _, mutation, op in check.graphs), check.graphs
