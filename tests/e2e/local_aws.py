"""An AWS account on loopback for the round trip: the emulator, the real CDK CLI pointed at it, and
boto3 clients to read back what it holds.

Nothing may leave the machine: every client gets proxy settings that lead to `OffMachineTrap`, a
loopback listener that counts connections, with only the loopback hosts exempt; the round trip
asserts the trap saw none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from inference.serve import free_port
from tests.e2e.emulator import ACCOUNT, Emulator, WaitHandleRecorder, only_the_vpc_outlived_its_stack
from tests.project_copy import REPO, project_copy

REGION = "us-west-2"
# Installed, not checked in: the copy links to this checkout's.
INSTALLED = (".venv", "node_modules")
CDK_TIMEOUT_S = 300


class OffMachineTrap:
    """A listener that every proxy setting points at: any attempt to leave the machine lands here."""

    def __init__(self) -> None:
        self.attempts: list[str] = []  # the first line each client sent, e.g. "CONNECT host:443 HTTP/1.1"
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            connection.settimeout(5)
            try:
                self.attempts.append(connection.recv(1024).split(b"\r\n")[0].decode(errors="replace"))
            except OSError:
                self.attempts.append("(nothing sent)")
            connection.close()

    def close(self) -> None:
        self._socket.close()

    def environment(self) -> dict[str, str]:
        return {
            name: value
            for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
            for name, value in ((proxy, self.url), (proxy.lower(), self.url))
        } | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@dataclass
class Stack:
    name: str
    resources: dict[str, list[dict[str, Any]]]  # resource type -> its StackResourceSummaries
    outputs: dict[str, str]

    def physical_ids(self, resource_type: str) -> list[str]:
        return [resource["PhysicalResourceId"] for resource in self.resources.get(resource_type, [])]

    def only(self, resource_type: str) -> str:
        (physical_id,) = self.physical_ids(resource_type)
        return physical_id


class LocalAws:
    def __init__(
        self, emulator: Emulator, recorder: WaitHandleRecorder, trap: OffMachineTrap, home: Path, project: Path
    ) -> None:
        self.emulator = emulator
        self.project = project
        self.recorder = recorder
        self.trap = trap
        self.home = home
        self.region = emulator.region
        self.session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=self.region
        )

    def environment(self) -> dict[str, str]:
        """For every AWS client process: the emulator's endpoint and credentials, no way off the machine."""
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            **self.emulator.environment(),
            **self.trap.environment(),
        }

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.emulator.url)

    def cdk(
        self,
        *arguments: str,
        context: dict[str, str] | None = None,
        tolerated: Callable[[str], bool] = lambda output: False,
    ) -> subprocess.CompletedProcess[str]:
        """The real CDK CLI of node_modules, as a user runs it, against the emulator; a failure fails
        the test unless `tolerated` recognises it as an emulator gap."""
        options = [f"--context={key}={value}" for key, value in (context or {}).items()]
        command = ["npx", "--no-install", "cdk", *arguments, *options, "--no-notices", "--output", self._outdir()]
        env = {
            **self.environment(),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_VERSION_CHECK": "true",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "CDK_HOME": str(self.home / ".cdk"),
            "NPM_CONFIG_UPDATE_NOTIFIER": "false",  # npx would ask registry.npmjs.org for a newer npm
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=self.project, env=env, capture_output=True, text=True, timeout=CDK_TIMEOUT_S, check=False
        )
        if result.returncode != 0 and not tolerated(result.stderr):
            raise AssertionError(f"{' '.join(command[:5])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        print(f"cdk {' '.join(arguments)}: {time.monotonic() - started:.1f} s")
        return result

    def bootstrap(self) -> None:
        self.cdk("bootstrap", f"aws://{ACCOUNT}/{self.region}")

    def deploy(self, *stacks: str, **context: str) -> str:
        """`cdk deploy`, with the direct method: moto's change sets build no exports (tests/e2e/emulator.py).
        Returns what the CLI printed (it reports on stderr)."""
        arguments = ("deploy", *(stacks or ("--all",)), "--require-approval", "never", "--method=direct")
        return self.cdk(*arguments, context=context).stderr

    def destroy(self, *stacks: str, **context: str) -> None:
        self.cdk(
            "destroy", *(stacks or ("--all",)), "--force", context=context, tolerated=only_the_vpc_outlived_its_stack
        )

    def stack(self, name: str) -> Stack:
        cloudformation = self.client("cloudformation")
        summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
        resources: dict[str, list[dict[str, Any]]] = {}
        for summary in summaries:
            resources.setdefault(summary["ResourceType"], []).append(summary)
        described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}
        return Stack(name, resources, outputs)

    def template(self, stack_name: str) -> dict[str, Any]:
        """The template CloudFormation holds for a stack, as deployed."""
        body = self.client("cloudformation").get_template(StackName=stack_name)["TemplateBody"]
        return body if isinstance(body, dict) else json.loads(body)

    def stack_statuses(self) -> dict[str, str]:
        """Newest status per stack name (ListStacks: no DescribeStacks on deleted stacks, an emulator gap)."""
        summaries = self.client("cloudformation").list_stacks()["StackSummaries"]
        newest: dict[str, dict[str, Any]] = {}
        for summary in summaries:
            known = newest.get(summary["StackName"])
            if known is None or summary["CreationTime"] > known["CreationTime"]:
                newest[summary["StackName"]] = summary
        return {name: summary["StackStatus"] for name, summary in newest.items()}

    def live_stacks(self) -> set[str]:
        """Stacks that exist: deleted ones are DELETE_COMPLETE, or gone from the list in the emulator's
        VPC gap (tests/e2e/emulator.py)."""
        return {name for name, status in self.stack_statuses().items() if status != "DELETE_COMPLETE"}

    def _outdir(self) -> str:
        return str(self.home / "cdk.out")


@contextmanager
def local_aws(root: Path) -> Iterator[LocalAws]:
    """The whole loopback account; everything it started is stopped on the way out, whatever happened."""
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        trap = OffMachineTrap()
        stack.callback(trap.close)
        recorder = stack.enter_context(WaitHandleRecorder())
        emulator = stack.enter_context(
            Emulator(free_port(), REGION, f"{recorder.url}/waitcondition", log=root / "emulator.log")
        )
        yield LocalAws(emulator, recorder, trap, root, installed_project_copy(root / "project"))


def installed_project_copy(target: Path) -> Path:
    """Where the CLI runs: a copy a test may edit, linked to this checkout's installed packages."""
    project_copy(target)
    for name in INSTALLED:
        (target / name).symlink_to((REPO / name).resolve())
    return target
