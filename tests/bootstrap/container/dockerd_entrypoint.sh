#!/usr/bin/env bash
# What the training DLC's ENTRYPOINT (`bash -m dockerd_entrypoint.sh`) does with the container's
# command, written for these tests from its documented behaviour (aws/deep-learning-containers
# 959ce8a4, pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu): a CUDA-compat step in a child
# shell when torch sees a GPU, then the command evaluated by this shell, a second expansion.
if [[ $(python -c 'import torch; print(torch.cuda.is_available())') == True ]]; then
  bash /usr/local/bin/start_cuda_compat.sh
fi
# shellcheck disable=SC2294 # the second expansion is the behaviour modelled here
eval "$@"
