"""Serves a model.tar.gz on this machine exactly as the SageMaker endpoint does, on loopback only.

The endpoint image runs `sagemaker_pytorch_serving_container.serving.main()`, which pip-installs
`code/requirements.txt`, writes a TorchServe config and starts TorchServe on the unpacked archive.
`LocalEndpoint` runs that same entry point in its own process group, with three changes that keep
it off the network and out of the system:

- The toolkit hard-codes `0.0.0.0` in the config it generates, but that config keeps TorchServe's
  `enable_envvars_config=true`, so `TS_INFERENCE_ADDRESS`/`TS_MANAGEMENT_ADDRESS`/
  `TS_METRICS_ADDRESS` (which TorchServe prefers over the file) bind everything to 127.0.0.1.
- The config goes to the server's own directory instead of `/etc/sagemaker-ts.properties`, and
  `TMPDIR`/`TEMP` point there too, so TorchServe's pid file and model copy stay out of /tmp.
- `SAGEMAKER_BASE_DIR` stands in for `/opt/ml`, so the archive unpacks to `<tmp>/ml/model`.
- pip sees only what the archive offers: this machine's pip configuration (config files and the
  `PIP_*` variables naming indexes or find-links) is not passed on; the image has none.

Two options make it closer still to an endpoint: `clean_packages` installs `code/requirements.txt`
into an empty directory of the server's own that comes first on the workers' path (pip's `--target`,
through `PIP_TARGET`), as on an image that lacks the packages, so the archive's wheels are what the
handler imports; `overwrite_workers` starts the toolkit the way one version of the DLC entrypoint
does, after setting `SAGEMAKER_MODEL_SERVER_WORKERS` to the CPU count (aws/deep-learning-containers
22714d405e, pytorch/inference/docker/build_artifacts/torchserve-entrypoint.py).

The toolkit refuses to start while another TorchServe runs on the machine ("multiple ts model
servers are not supported"), so `LocalEndpoint` holds a machine-wide lock while it runs: a second
one waits for the first to stop (up to `lock_timeout`) instead of failing halfway.
Startup waits for `/ping` and then for a real invocation to succeed (TorchServe answers `/ping` with
200 while a worker is still loading). It fails at once, with the end of the server log, when the
server exits (a failed pip install) or `/ping` answers 500 (a model that failed to load, which the
archive's TorchServe config does not retry), and after `startup_timeout` otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

DEFAULT_PORT = 8080
READY_TEXT = "Covid cases are increasing fast!"
# One local server per machine (see the module docstring); the file holds the owner's pid.
LOCK_FILE = Path(tempfile.gettempdir()) / "pt2-local-endpoint.lock"

# Runs in the server process: the endpoint's entry point, with the config file moved.
_BOOTSTRAP = (
    "import sys\n"
    "from sagemaker_pytorch_serving_container import serving, torchserve\n"
    "torchserve.TS_CONFIG_FILE = sys.argv[1]\n"
    "serving.main()\n"
)
# What the entrypoint version of aws/deep-learning-containers 22714d405e runs before the toolkit.
_OVERWRITE_WORKERS = (
    'import multiprocessing, os\nos.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(multiprocessing.cpu_count())\n'
)
# Where pip could find packages other than the archive's wheels.
_PIP_SOURCES = ("PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")


def post_invocation(
    url: str,
    body: bytes,
    content_type: str = "application/x-text",
    accept: str = "application/json",
    timeout: float = 30,
) -> tuple[int, bytes]:
    """POSTs to `<url>/invocations` like SageMaker's runtime does; returns status and body, 4xx too."""
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": accept},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def ping(url: str, timeout: float = 5) -> int:
    """Status of `GET /ping`: 200 also while the model still loads, 500 once it failed to load."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


class LocalEndpoint:
    """The real serving stack on 127.0.0.1:`port`, ready once an invocation has succeeded.

    Use as a context manager; `stop()` ends the whole process group (toolkit, TorchServe's Java
    frontend and its Python workers) and removes the unpacked model.
    """

    def __init__(
        self,
        model_tar: Path,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log: IO[str] | None = None,
        startup_timeout: float = 120,
        lock_timeout: float = 600,
        clean_packages: bool = False,
        overwrite_workers: bool = False,
    ) -> None:
        self.model_tar = Path(model_tar)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workers = workers
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.lock_timeout = lock_timeout
        self.clean_packages = clean_packages
        self.overwrite_workers = overwrite_workers
        self.cold_start_seconds: float | None = None  # from launch to the first successful invocation
        self.launched_at = 0.0  # time.monotonic() at launch
        self._log = log
        self._lock: IO[str] | None = None
        self._workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalEndpoint:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        """Where the server's output goes when no `log` stream was given."""
        assert self._workdir is not None, "not started"
        return self._workdir / "server.log"

    def start(self) -> None:
        """Launches the server and waits for a real invocation to succeed; stops it if that fails."""
        try:
            self.launch()
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Unpacks the archive and starts the toolkit, once no other local endpoint runs; `stop()` ends it."""
        if not port_is_free(self.port):
            # Another server there would answer the readiness check in this one's place.
            raise RuntimeError(f"127.0.0.1:{self.port} is in use; stop that server or pick another port")
        self._lock = _acquire_machine_lock(self.lock_timeout)
        self.launched_at = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="pt2-serve-"))
        model_dir = self._workdir / "ml" / "model"
        model_dir.mkdir(parents=True)
        with tarfile.open(self.model_tar) as archive:
            archive.extractall(model_dir, filter="data")
        with contextlib.ExitStack() as stack:
            output = self._log or stack.enter_context(self.log_path.open("w"))
            bootstrap = (_OVERWRITE_WORKERS if self.overwrite_workers else "") + _BOOTSTRAP
            self.process = subprocess.Popen(
                [sys.executable, "-c", bootstrap, str(self._workdir / "ts.properties")],
                cwd=self._workdir,
                env=self._environment(model_dir),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def invoke(
        self, body: bytes, content_type: str = "application/x-text", accept: str = "application/json"
    ) -> tuple[int, bytes]:
        return post_invocation(self.url, body, content_type, accept)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM to the group (the toolkit forwards it to TorchServe), SIGKILL what outlives it."""
        if self.process is not None:
            group = self.process.pid
            _signal_group(group, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while group_members(group) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(group, signal.SIGKILL)
            self.process.wait()
            self.process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _environment(self, model_dir: Path) -> dict[str, str]:
        assert self._workdir is not None
        hidden = {"PYTHONPATH", *_PIP_SOURCES}
        env = {key: value for key, value in os.environ.items() if key not in hidden}
        loopback = f"http://127.0.0.1:{self.port}"
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            SAGEMAKER_BASE_DIR=str(model_dir.parent),
            SAGEMAKER_PROGRAM="inference.py",
            SAGEMAKER_SUBMIT_DIRECTORY=str(model_dir / "code"),
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            SAGEMAKER_MODEL_SERVER_WORKERS=str(self.workers),
            TS_INFERENCE_ADDRESS=loopback,
            TS_MANAGEMENT_ADDRESS=loopback,
            TS_METRICS_ADDRESS=f"http://127.0.0.1:{free_port()}",
            TMPDIR=str(self._workdir),  # TorchServe's pid file
            TEMP=str(self._workdir),  # its Java tmpdir, where it copies the model
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_CONFIG_FILE=os.devnull,
        )
        if self.clean_packages:
            packages = str(self._workdir / "packages")
            env.update(PIP_TARGET=packages, PYTHONPATH=packages)
        env.update(self.extra_env)
        return env

    def wait_until_ready(self) -> None:
        """Until an invocation succeeds; raises as soon as the start has failed (see the module docstring)."""
        assert self.process is not None, "not launched"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}{self._log_tail()}")
            try:
                health = ping(self.url, timeout=2)
            except OSError:
                health = 0  # not listening yet
            if health == 500:
                raise self._load_failed()
            if health == 200 and self._first_invocation_succeeded():
                self.cold_start_seconds = time.monotonic() - self.launched_at
                return
            time.sleep(0.5)
        raise TimeoutError(f"no successful invocation after {self.startup_timeout:.0f} s{self._log_tail()}")

    def _first_invocation_succeeded(self) -> bool:
        """The request waits in TorchServe's queue until a worker has loaded the model; the short
        timeout goes back to watching /ping and the process meanwhile."""
        try:
            status, body = post_invocation(self.url, READY_TEXT.encode(), timeout=5)
        except OSError:
            return False
        if status in (200, 503):
            return status == 200
        if ping(self.url, timeout=2) == 500:  # the worker died loading while the request waited
            raise self._load_failed()
        raise RuntimeError(f"the first invocation failed: {status} {body[:500]!r}{self._log_tail()}")

    def _load_failed(self) -> RuntimeError:
        return RuntimeError(f"the model failed to load: /ping answers 500{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        if self._log is not None or self._workdir is None:
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "; server log:\n" + "\n".join(tail)


def _acquire_machine_lock(timeout: float) -> IO[str]:
    """Waits until no other LocalEndpoint on this machine runs, then holds the lock (an flock, so a
    crashed owner releases it)."""
    handle = LOCK_FILE.open("a+")
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            if time.monotonic() >= deadline:
                handle.close()
                raise RuntimeError(
                    f"another local endpoint (pid {owner}) is still running after {timeout:.0f} s; stop it first"
                ) from None
            if not announced:
                print(f"waiting for the local endpoint of pid {owner} to stop (one per machine)", file=sys.stderr)
                announced = True
            time.sleep(0.5)
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in a process group: what a clean stop must leave empty."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(group: int, signo: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(group, signo)


def main(argv: list[str] | None = None) -> int:
    """`python -m inference.serve --model model.tar.gz`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model.tar.gz as the endpoint gets it")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=1, help="TorchServe workers (each loads the model)")
    args = parser.parse_args(argv)
    # Ctrl-C and `kill` both stop cleanly, even where SIGINT starts ignored (a background job).
    for signo in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signo, signal.default_int_handler)
    endpoint = LocalEndpoint(args.model, args.port, args.workers, log=sys.stderr)
    try:
        with endpoint:
            print(f"ready: POST {endpoint.url}/invocations (Ctrl-C stops)", flush=True)
            assert endpoint.process is not None
            return endpoint.process.wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
