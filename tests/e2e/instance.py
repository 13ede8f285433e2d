"""Plays the training instance: runs the exact user data that the emulator holds for it.

The bytes come from `DescribeInstanceAttribute userData`, as EC2 would hand them to cloud-init, and
run as one bash process in a sandbox folder. Every AWS call in them is the real aws CLI against the
emulator. Stand-ins replace only what this machine cannot have: `docker` (tests/e2e/standins: runs
the container's command in this venv), `nvidia-smi` (two GPUs, so torchrun starts two processes)
and `shutdown` (records the call; both from tests/bootstrap/standins). The WaitCondition handle is
the emulator's recorder (tests/e2e/emulator.py); PyPI, where the package step downloads the
endpoint's wheels, is a folder of the locked wheels (tests/wheel_sets.py, cached in build/wheels).

The sandbox stands in for the instance's disk: `WORK_ROOT` and `PER_BOOT_DIR` (which the user data
leaves to their defaults, /opt/pt2 and cloud-init's per-boot folder) point into it, and so does
`EFA_DEVICE_DIR` (/dev/infiniband), which holds one empty file per EFA device the instance type has.

The nodes of a training cluster run at the same time on this machine (`start`, then `finish`): each is
an `EmulatedInstance` of its own, one GPU each (one torchrun process per node, gloo on CPU). The
emulator's private IPs lead nowhere here, so `on_loopback` gives node 0's address in the user data as
127.0.0.1, and all nodes share the rendezvous port `RENDEZVOUS_PORT` (a free one instead of 29400).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BOOTSTRAP_STANDINS = HERE.parent / "bootstrap" / "standins"
STANDINS = {
    "docker": HERE / "standins" / "docker",
    "nvidia-smi": BOOTSTRAP_STANDINS / "nvidia-smi",
    "shutdown": BOOTSTRAP_STANDINS / "shutdown",
    "_standin.sh": BOOTSTRAP_STANDINS / "_standin.sh",
}
GPUS = 2
BOOT_TIMEOUT_S = 600
CONTAINER_OUTPUT = "/workspace/output"  # the bootstrap mounts its output folder here


@dataclass
class Boot:
    returncode: int
    output: str
    calls: list[list[str]]

    def calls_to(self, tool: str, *prefix: str) -> list[list[str]]:
        return [call[1:] for call in self.calls if call[0] == tool and call[1 : 1 + len(prefix)] == list(prefix)]

    @property
    def powered_off(self) -> bool:
        return bool(self.calls) and self.calls[-1] == ["shutdown", "-h", "now"]


def user_data(ec2: Any, instance_id: str) -> bytes:
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attribute["UserData"]["Value"])


class EmulatedInstance:
    """One instance's disk in `root`; `boot` runs its user data, `reboot` what cloud-init runs at a later boot."""

    def __init__(
        self,
        root: Path,
        aws_environment: dict[str, str],
        package_index: Path,
        gpus: int = GPUS,
        efa_devices: int = 0,
        extra_environment: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.work_root = root / "opt-pt2"
        self.per_boot_dir = root / "per-boot"
        self.standin_dir = root / "standin"
        bin_dir = root / "bin"
        efa_dir = root / "dev-infiniband"
        for folder in (self.standin_dir, bin_dir, root / "home", efa_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for index in range(efa_devices):
            (efa_dir / f"uverbs{index}").touch()
        for name, source in STANDINS.items():
            (bin_dir / name).symlink_to(source)
        venv_bin = Path(sys.executable).parent
        self.env = {
            **aws_environment,  # the instance profile's credentials, and the emulator as the AWS endpoint
            "PATH": os.pathsep.join([str(bin_dir), str(venv_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(root / "home"),
            "LANG": "C.UTF-8",
            "WORK_ROOT": str(self.work_root),
            "PER_BOOT_DIR": str(self.per_boot_dir),
            "STANDIN_DIR": str(self.standin_dir),
            "STANDIN_GPUS": str(gpus),
            "STANDIN_PYPI": str(package_index),
            "EFA_DEVICE_DIR": str(efa_dir),
            **(extra_environment or {}),
        }
        for tool in ("docker", "nvidia-smi", "shutdown"):
            # A real `shutdown` found first would power this machine off (tests may run as root).
            assert shutil.which(tool, path=self.env["PATH"]) == str(bin_dir / tool), tool

    def stage_input(self, source: Path) -> str:
        """Puts a file or folder where the container sees it; returns its path inside the container."""
        target = self.work_root / "output" / "inputs" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
        return f"{CONTAINER_OUTPUT}/inputs/{source.name}"

    def boot(self, script: bytes) -> Boot:
        """The first boot: cloud-init runs the user data once."""
        return self.finish(self.start(script))

    def reboot(self) -> Boot:
        """A later boot: cloud-init runs the per-boot scripts, which the first boot installed."""
        return self.finish(self._start(["bash", str(self.per_boot_dir / "pt2-bootstrap.sh")]))

    def start(self, script: bytes) -> subprocess.Popen[str]:
        """A first boot that runs while the caller goes on (its output goes to a file: nothing blocks on a pipe)."""
        path = self.root / "user-data"
        path.write_bytes(script)
        return self._start(["bash", str(path)])

    def finish(self, process: subprocess.Popen[str]) -> Boot:
        process.wait(timeout=BOOT_TIMEOUT_S)
        calls_log = self.standin_dir / "calls.log"
        calls = [line.split("\t") for line in calls_log.read_text().splitlines()] if calls_log.exists() else []
        return Boot(process.returncode, (self.root / "boot.out").read_text(), calls)

    def _start(self, command: list[str]) -> subprocess.Popen[str]:
        (self.standin_dir / "calls.log").unlink(missing_ok=True)
        with (self.root / "boot.out").open("w") as output:
            return subprocess.Popen(
                command, env=self.env, cwd=self.root, stdout=output, stderr=subprocess.STDOUT, text=True
            )


def on_loopback(script: bytes, node0_address: str) -> bytes:
    """The user data with node 0's private IP, which the emulator made up, as this machine's loopback address."""
    line = f"export NODE0_ADDR='{node0_address}'\n".encode()
    assert script.count(line) == 1, "the user data does not name node 0's address once"
    return script.replace(line, b"export NODE0_ADDR='127.0.0.1'\n")
