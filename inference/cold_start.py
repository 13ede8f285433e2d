"""Starts a model.tar.gz once on the local real-toolkit server, answers one request, reports, stops.

    python -m inference.cold_start --model build/model.tar.gz --no-network --clean-packages

Prints one JSON line: the seconds from launch to the first answer and until every worker TorchServe
runs has loaded the model, the answer, the number of workers, and whether there was a network. The
server log goes to stderr.

--no-network runs all of it (pip, TorchServe, the request) in a new network namespace that has only
loopback (`unshare --net`). Where namespaces are not available it falls back to pointing pip at a
closed loopback port with no proxy; the report says which it was and whether the internet answered.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from inference.serve import READY_TEXT, LocalEndpoint, free_port

# Set in the re-run inside the namespace (and in the fallback): how the network was cut.
NETWORK_CUT = "PT2_NETWORK_CUT"
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    env = dict(_assignment(item) for item in args.env)
    if args.no_network and NETWORK_CUT not in os.environ:
        if can_unshare():
            return _rerun_in_network_namespace(argv)
        for name in _PROXIES:
            os.environ.pop(name, None)
        os.environ[NETWORK_CUT] = "pip index on a closed loopback port, no proxy"
        env["PIP_INDEX_URL"] = f"http://127.0.0.1:{free_port()}/simple/"
    endpoint = LocalEndpoint(
        args.model,
        port=args.port or free_port(),
        workers=args.workers,
        env=env,
        log=sys.stderr,
        startup_timeout=args.startup_timeout,
        clean_packages=args.clean_packages,
        overwrite_workers=args.overwrite_workers,
    )
    with endpoint:
        status, body = endpoint.invoke(READY_TEXT.encode())
        workers = wait_for_all_workers(endpoint.url, args.startup_timeout)
        report = {
            "cold_start_seconds": round(endpoint.cold_start_seconds or 0, 1),
            "all_workers_ready_seconds": round(time.monotonic() - endpoint.launched_at, 1),
            "status": status,
            "reply": json.loads(body) if status == 200 else body.decode(errors="replace"),
            "workers": workers,
            "network": os.environ.get(NETWORK_CUT, "on"),
            "internet_reachable": internet_reachable(),
        }
    print(json.dumps(report), flush=True)
    return 0


def can_unshare() -> bool:
    """A network namespace needs util-linux's unshare, iproute2's ip and the kernel's permission."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "--net", "--map-root-user", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def _rerun_in_network_namespace(argv: list[str]) -> int:
    """Loopback starts down in a new namespace; everything else stays unreachable."""
    command = [sys.executable, "-m", "inference.cold_start", *argv]
    env = {**os.environ, NETWORK_CUT: "network namespace with loopback only (unshare --net)"}
    wrapper = ["unshare", "--net", "--map-root-user", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    return subprocess.call([*wrapper, *command], env=env)


def wait_for_all_workers(url: str, timeout: float) -> int:
    """The number of workers TorchServe runs for the model, once all are READY (from its management
    API, which the toolkit serves on the same port)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{url}/models/model", timeout=10) as response:
            (model,) = json.load(response)
        statuses = [worker["status"] for worker in model["workers"]]
        if all(status == "READY" for status in statuses) or time.monotonic() > deadline:
            return len(statuses)
        time.sleep(0.5)


def internet_reachable(host: str = "pypi.org", port: int = 443) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return False
    return True


def _assignment(item: str) -> tuple[str, str]:
    name, separator, value = item.partition("=")
    if not separator:
        raise SystemExit(f"error: --env {item!r} is not NAME=VALUE")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model.tar.gz as the endpoint gets it")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--workers", type=int, default=1, help="SAGEMAKER_MODEL_SERVER_WORKERS")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--no-network", action="store_true", help="cut the network (see above)")
    parser.add_argument(
        "--clean-packages", action="store_true", help="install code/requirements.txt as on an image without them"
    )
    parser.add_argument(
        "--overwrite-workers", action="store_true", help="start as the DLC entrypoint that overwrites the workers"
    )
    parser.add_argument("--startup-timeout", type=float, default=300)
    return parser


if __name__ == "__main__":
    sys.exit(main())
