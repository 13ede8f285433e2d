"""Runs training/bootstrap.sh for real, with stand-ins for aws, docker, curl, nvidia-smi and shutdown.

The stand-ins (tests/bootstrap/standins/) record every call in calls.log, keep S3 objects under
s3/<bucket>/<key>, WaitCondition bodies under signals/ and CloudWatch batches under cloudwatch/, all
inside the sandbox folder. STANDIN_FAIL=tool:glob makes the matching call fail. `docker run` starts
the command through the DLC's own entrypoint, behind tini for --init, where stand-ins for torchrun
and python (tests/bootstrap/container/) record the arguments that reach them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "bootstrap.sh"
STANDINS = Path(__file__).resolve().parent / "standins"
STANDIN_TOOLS = ("aws", "docker", "curl", "nvidia-smi", "shutdown", "npx")
CONTAINER_STANDINS = Path(__file__).resolve().parent / "container"
DLC_ENTRYPOINT = CONTAINER_STANDINS / "dockerd_entrypoint.sh"

BUCKET = "artifacts-bucket"
ASSET_BUCKET = "cdk-assets"
RUN_ID = "run-7"
REGISTRY = "763104351884.dkr.ecr.us-west-2.amazonaws.com"
IMAGE_URI = f"{REGISTRY}/pytorch-training:2.9.0-gpu-py312-cu130-ubuntu22.04-ec2"
MODEL_KEY = f"runs/{RUN_ID}/model.tar.gz"
METRICS_KEY = f"runs/{RUN_ID}/metrics.json"
CHECKPOINT_PREFIX = f"runs/{RUN_ID}/checkpoints"
TIMEOUT_S = 30

# What CDK's zip assets of training/, inference/ and docker/ hold (folder contents, no top dir).
ASSETS = {
    "training": {"__init__.py": "", "train.py": "", "package.py": ""},
    "inference": {"requirements.txt": "", "requirements.lock": ""},  # the pins only (stacks/training_stack.py)
    "docker": {"Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"},
}

STEP_STARTED = re.compile(r"^\S+ bootstrap: step (\S+): started$", re.MULTILINE)
NODE0_ADDR = "10.0.1.5"
EFA_DEVICES = 4  # a p4d.24xlarge's


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]
    signals: list[dict[str, str]]

    @property
    def steps(self) -> list[str]:
        return STEP_STARTED.findall(self.stdout)

    def calls_to(self, tool: str, *prefix: str) -> list[list[str]]:
        """The argument lists of the calls to `tool` whose arguments start with `prefix`."""
        return [call[1:] for call in self.calls if call[0] == tool and call[1 : 1 + len(prefix)] == list(prefix)]

    @property
    def powered_off(self) -> bool:
        return self.calls[-1] == ["shutdown", "-h", "now"]


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_root = self.root / "work"
        self.per_boot_dir = self.root / "per-boot"
        self.standin_dir = self.root / "standin"
        self.standin_dir.mkdir(parents=True)
        # The script's python3: this interpreter, not a version-manager shim that costs 0.1 s a start.
        python_dir = self.root / "python"
        python_dir.mkdir()
        (python_dir / "python3").symlink_to(sys.executable)
        for name, files in ASSETS.items():
            self._put_zip(self.s3(f"{name}.zip", bucket=ASSET_BUCKET), files)
        self.env = {
            "PATH": os.pathsep.join([str(STANDINS), str(python_dir), os.environ["PATH"]]),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "STANDIN_DIR": str(self.standin_dir),
            "AWS_REGION": "us-west-2",
            "RUN_ID": RUN_ID,
            "ARTIFACT_BUCKET": BUCKET,
            "MODEL_S3_URI": f"s3://{BUCKET}/{MODEL_KEY}",
            "METRICS_S3_URI": f"s3://{BUCKET}/{METRICS_KEY}",
            "CHECKPOINT_S3_URI": f"s3://{BUCKET}/{CHECKPOINT_PREFIX}",
            **{f"{name.upper()}_ASSET_S3_URI": f"s3://{ASSET_BUCKET}/{name}.zip" for name in ASSETS},
            "TRAINING_IMAGE_URI": IMAGE_URI,
            "WAIT_HANDLE_URL": "https://cloudformation-waitcondition.example/handle?X-Amz-Signature=abc",
            "LOG_GROUP_NAME": "/pt2/training",
            "MAX_RUNTIME_MINUTES": "720",
            "TRAIN_ARGS": "--epochs 10 --per-device-batch-size 16",
            "KEEP_INSTANCE_ON_FAILURE": "false",
            "WORK_ROOT": str(self.work_root),
            "PER_BOOT_DIR": str(self.per_boot_dir),
        }

    def as_cluster_node(self, rank: int, efa_devices: int = EFA_DEVICES) -> Sandbox:
        """Node `rank` of two p4d.24xlarge nodes, with `efa_devices` EFA devices in the sandbox's /dev/infiniband."""
        devices = self.root / "infiniband"
        devices.mkdir(exist_ok=True)
        for index in range(efa_devices):
            (devices / f"uverbs{index}").touch()
        self.env.update(
            NODE_COUNT="2",
            NODE_RANK=str(rank),
            NODE0_ADDR=NODE0_ADDR,
            EFA_INTERFACES=str(EFA_DEVICES),
            EFA_DEVICE_DIR=str(devices),
        )
        return self

    def s3(self, key: str, bucket: str = BUCKET) -> Path:
        return self.standin_dir / "s3" / bucket / key

    @staticmethod
    def _put_zip(path: Path, files: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)

    def run(self, command: list[str] | None = None, env: dict[str, str] | None = None) -> Run:
        """Runs the script (or `command`) to the end; calls and signals are those of this run only."""
        env = self.env if env is None else env
        _check_standins_shadow_real_tools(env)
        for leftover in ("calls.log", "signals", "cloudwatch"):
            _remove(self.standin_dir / leftover)
        result = subprocess.run(
            command or ["bash", str(SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        return self.collect(result.returncode, result.stdout, result.stderr)

    def collect(self, returncode: int, stdout: str, stderr: str) -> Run:
        calls_log = self.standin_dir / "calls.log"
        calls = [line.split("\t") for line in calls_log.read_text().splitlines()] if calls_log.exists() else []
        signal_files = sorted((self.standin_dir / "signals").glob("*.json"), key=lambda p: int(p.stem))
        signals = [json.loads(path.read_text()) for path in signal_files]
        return Run(returncode, stdout, stderr, calls, signals)

    def log_events(self) -> list[dict[str, Any]]:
        batches = sorted((self.standin_dir / "cloudwatch").glob("*.json"), key=lambda p: int(p.stem))
        return [event for path in batches for event in json.loads(path.read_text())]


def _check_standins_shadow_real_tools(env: dict[str, str]) -> None:
    """Tests may run as root: a real `shutdown` found first on PATH would power the machine off."""
    for tool in STANDIN_TOOLS:
        assert shutil.which(tool, path=env["PATH"]) == str(STANDINS / tool), tool
    # Not skipped when missing: the Makefile installs it (Debian package `tini`, docker-init's code).
    assert shutil.which("tini", path=env["PATH"]), "tini is not installed: apt-get install -y tini"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
