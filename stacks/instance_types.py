"""The EC2 GPU instance types the training stack can run on, and what each one has.

Used at synth to refuse, before anything bills, what would only fail on the instance: a type that
does not exist, a global batch that does not split over its GPUs, a GPU too old for the image's CUDA
or the AMI's driver, a training cluster of a type without EFA. GPU counts and models are those of the
EC2 accelerated-computing instance documentation; compute capabilities those of NVIDIA's CUDA GPU list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    model: str
    compute_capability: float


T4, A10G, L4, L40S = Gpu("T4", 7.5), Gpu("A10G", 8.6), Gpu("L4", 8.9), Gpu("L40S", 8.9)
V100, A100, H100, H200 = Gpu("V100", 7.0), Gpu("A100", 8.0), Gpu("H100", 9.0), Gpu("H200", 9.0)


@dataclass(frozen=True)
class GpuInstanceType:
    gpus: int
    gpu: Gpu
    efa_interfaces: int = 0  # 0: no EFA, so no training cluster of this type


# The most EFA interfaces an instance of the type takes, one per network card (DescribeInstanceTypes
# NetworkInfo.EfaInfo.MaximumEfaInterfaces). Sources: the EC2 EFA user guide (p4d.24xlarge: four; the
# other types of its 2023 list: one) and its multiple-network-card page (P5 and P5e: 32 cards); the
# EFA device counts of PyTorch's torchx named AWS resources (p4de 4, p5en 16, g6e.24xlarge 2, g6e.48xlarge
# 4, the g4dn and g5 sizes 1). A type no source here confirms is left out: a cluster of it is refused.
EFA_INTERFACES = {
    **dict.fromkeys(("g4dn.8xlarge", "g4dn.12xlarge", "g4dn.16xlarge", "g4dn.metal"), 1),
    **dict.fromkeys(("g5.8xlarge", "g5.12xlarge", "g5.16xlarge", "g5.24xlarge", "g5.48xlarge"), 1),
    **{"g6e.24xlarge": 2, "g6e.48xlarge": 4, "p3dn.24xlarge": 1},
    **{"p4d.24xlarge": 4, "p4de.24xlarge": 4},
    **{"p5.48xlarge": 32, "p5e.48xlarge": 32, "p5en.48xlarge": 16},
}


def _sizes(family: str, gpu: Gpu, counts: dict[str, int]) -> dict[str, GpuInstanceType]:
    names = {f"{family}.{size}": count for size, count in counts.items()}
    return {name: GpuInstanceType(count, gpu, EFA_INTERFACES.get(name, 0)) for name, count in names.items()}


_ONE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    **_sizes("g4dn", T4, {**_ONE, "12xlarge": 4, "metal": 8}),
    **_sizes("g5", A10G, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    **_sizes("g6", L4, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    **_sizes("g6e", L40S, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    **_sizes("p3", V100, {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    **_sizes("p3dn", V100, {"24xlarge": 8}),
    **_sizes("p4d", A100, {"24xlarge": 8}),
    **_sizes("p4de", A100, {"24xlarge": 8}),
    **_sizes("p5", H100, {"4xlarge": 1, "48xlarge": 8}),
    **_sizes("p5e", H200, {"48xlarge": 8}),
    **_sizes("p5en", H200, {"48xlarge": 8}),
}

# NVIDIA's open GPU kernel modules, which the DLAMI "OSS Nvidia Driver" AMIs ship, support Turing
# (compute capability 7.5) and newer only.
OSS_DRIVER_MIN_COMPUTE_CAPABILITY = 7.5


def families() -> list[str]:
    return sorted({name.split(".")[0] for name in GPU_INSTANCE_TYPES})
