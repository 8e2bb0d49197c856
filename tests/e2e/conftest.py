"""A private two-node Ray cluster on this machine, started with the real `ray` CLI.

Both nodes run `ray start` with their own temp dir, ports, token and resources,
so the test never touches another Ray on the machine (`ray stop` cannot be
scoped: it kills every Ray process of the user). Every process the cluster
spawns (GCS, raylets, agents, workers, job drivers) inherits a marker env var;
teardown kills exactly the processes that carry it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv: `ray`, and the `python` the job's entrypoint runs
MARKER = "TINYREASON_E2E_CLUSTER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n: int = 60) -> tuple[int, int]:
    """n consecutive free ports for one node's workers (each worker process takes one)."""
    for _ in range(200):
        lo = 20000 + secrets.randbelow(20000)
        socks = []
        try:
            for p in range(lo, lo + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return lo, lo + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for Ray workers")


@dataclass
class Cluster:
    root: Path  # temp dirs, token, shared storage
    env: dict  # what `ray` client commands need: RAY_ADDRESS, RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH
    gcs_address: str
    dashboard_url: str
    storage: Path
    shadow: Path  # a `tinyreason` on the nodes' PYTHONPATH that refuses to import
    log: list[str] = field(default_factory=list)

    def ray(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run the `ray` CLI against this cluster; output is kept for failure reports."""
        p = subprocess.run([str(BIN / "ray"), *args], cwd=ROOT, env=self.env, text=True,
                           capture_output=True, timeout=timeout)
        self.log.append(f"$ ray {' '.join(args)}  -> rc {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
        if check and p.returncode != 0:
            raise AssertionError(f"ray {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def list_state(self, kind: str, *filters: str) -> list[dict]:
        args = ["list", kind, "--format", "json", "--detail", "--limit", "10000"]
        for f in filters:
            args += ["--filter", f]
        return json.loads(self.ray(*args).stdout)

    def our_processes(self) -> list:
        """Every process this cluster started: those carrying the marker, and their descendants
        (dashboard modules rename themselves, which can clobber their /proc environ)."""
        import psutil

        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get(MARKER) == str(self.root):
                    found[proc.pid] = proc
                    found.update((c.pid, c) for c in proc.children(recursive=True))
            except (psutil.Error, OSError):
                pass
        return list(found.values())

    def stop(self) -> None:
        """Kill exactly the processes this cluster started, in `ray stop`'s order: raylets
        (their workers and agents fate-share), then the rest, then the GCS. SIGTERM, then
        SIGKILL after a grace period."""
        import psutil

        procs = self.our_processes()

        def name(p):
            try:
                return p.name()
            except psutil.Error:
                return ""

        raylets = [p for p in procs if name(p) == "raylet"]
        gcs = [p for p in procs if name(p) == "gcs_server"]
        rest = [p for p in procs if p not in raylets and p not in gcs]
        for bucket, grace in ((raylets, 8), (rest, 5), (gcs, 5)):
            _terminate(bucket, grace)
        _terminate(self.our_processes(), 2)  # anything spawned meanwhile


def _terminate(procs: list, grace: float) -> None:
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def _node_args(temp_dir: Path, cpus: int, resources: dict | None) -> list[str]:
    lo, hi = free_port_range()
    args = ["--temp-dir", str(temp_dir), "--num-cpus", str(cpus), "--num-gpus", "0",
            "--min-worker-port", str(lo), "--max-worker-port", str(hi),
            "--dashboard-agent-listen-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--object-store-memory", str(300 * 1024**2),  # 300 MB; the micro blends are a few MB
            "--disable-usage-stats"]
    if resources:
        args += ["--resources", json.dumps(resources)]
    return args


def start_cluster() -> Cluster:
    # Short root under /tmp: Ray's unix sockets live under --temp-dir and must stay < 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="tr-e2e-", dir="/tmp"))
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    shadow = root / "shadow"
    (shadow / "tinyreason").mkdir(parents=True)
    (shadow / "tinyreason" / "__init__.py").write_text(
        "raise ImportError('tinyreason imported from the node, not from the job: the runtime env does not ship it')\n")
    storage = root / "storage"
    storage.mkdir()

    # Token auth from our own token file: ~/.ray/auth_token (other people's clusters) stays untouched.
    node_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                # The nodes' own `tinyreason` is the shadow above (ahead of the editable install):
                # a worker that imports the package without the job's py_modules fails loudly.
                "PYTHONPATH": str(shadow),
                "RAY_USAGE_STATS_ENABLED": "0", MARKER: str(root)}
    for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_JOB_ID", "RAY_JOB_CONFIG_JSON_ENV_VAR"):
        node_env.pop(k, None)
    gcs_port, dash_port = free_port(), free_port()
    gcs = f"127.0.0.1:{gcs_port}"
    head = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port),
            "--ray-client-server-port", str(free_port()),
            *_node_args(root / "head", 1, {"head": 1})]
    node2 = ["start", "--address", gcs, "--node-ip-address", "127.0.0.1",
             *_node_args(root / "node2", 1, {"node2": 1})]
    cluster = Cluster(root, {**node_env, "RAY_ADDRESS": f"http://127.0.0.1:{dash_port}"}, gcs,
                      f"http://127.0.0.1:{dash_port}", storage, shadow)
    cluster.env.pop("PYTHONPATH")  # the test's own `ray` client commands need no shadow
    try:
        for args in (head, node2):
            p = subprocess.run([str(BIN / "ray"), *args], cwd=root, env=node_env, text=True, capture_output=True,
                               timeout=120)
            cluster.log.append(f"$ ray {' '.join(args)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
            if p.returncode != 0:
                raise RuntimeError(f"ray {args[0]} {args[1]} failed:\n{p.stdout}\n{p.stderr}")
        _wait_for_nodes(cluster, 2)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_nodes(cluster: Cluster, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        nodes = [x for x in cluster.list_state("nodes") if x["state"] == "ALIVE"]
        if len(nodes) >= n:
            return
        if time.time() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {n} Ray nodes came up: {nodes}")
        time.sleep(1)


@pytest.fixture(scope="module")
def two_node_cluster():
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.our_processes()
        shutil.rmtree(cluster.root, ignore_errors=True)
        assert not left, f"processes of the test cluster survived teardown: {[p.pid for p in left]}"
