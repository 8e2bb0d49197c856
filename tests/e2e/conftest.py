"""A private two-node Ray cluster on this machine, started with the real `ray` CLI.

Both nodes run `ray start` with their own temp dir, ports, token and resources,
so the test never touches another Ray on the machine (`ray stop` cannot be
scoped: it kills every Ray process of the user). Every process the cluster
spawns (GCS, raylets, agents, workers, job drivers) inherits a marker env var;
teardown kills exactly the processes that carry it.
"""

from __future__ import annotations

import itertools
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


def _ephemeral_floor() -> int:
    """The first port the kernel hands out to outgoing connections and to bind(0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortPool:
    """Ports for one cluster's processes, each checked free and never handed out twice.

    Picked below the kernel's ephemeral range on purpose: a port that bind(0) returned and we
    released stays in the pool the kernel draws from for every outgoing connection on the
    machine (Ray's own included), so it can be taken again before the node that was meant to
    bind it starts. An agent whose port is taken does not come up (Ray's job manager names
    "port conflicts" as the likely cause when it finds no agent), and a head without its agent
    refuses every job ("No available agent to submit job") while its node is ALIVE."""

    def __init__(self, lo: int = 20000, hi: int | None = None):
        self.lo, self.hi = lo, (hi or _ephemeral_floor()) - 1
        self.taken: set[int] = set()

    def _free(self, ports) -> bool:
        socks = []
        try:
            for p in ports:
                if p in self.taken:
                    return False
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
        finally:
            for s in socks:
                s.close()

    def range(self, n: int = 60) -> tuple[int, int]:
        """n consecutive free ports (one node's workers: each worker process takes one)."""
        for _ in range(500):
            lo = self.lo + secrets.randbelow(self.hi - self.lo - n)
            if self._free(range(lo, lo + n)):
                self.taken.update(range(lo, lo + n))
                return lo, lo + n - 1
        raise RuntimeError(f"no {n} consecutive free ports in {self.lo}-{self.hi} for Ray workers")

    def one(self) -> int:
        return self.range(1)[0]


def free_port() -> int:
    """A port nothing listens on now (for tests that need a closed address)."""
    return PortPool().one()


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

    def log_tails(self, lines: int = 25) -> str:
        """The end of the head's agent, raylet and job-manager logs: why a head refuses jobs."""
        out = []
        for name in ("dashboard_agent.log", "raylet.out", "dashboard_JobHead.log"):
            f = self.root / "head" / "session_latest" / "logs" / name
            if f.is_file():
                out.append(f"== head {name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out) or "(no head logs)"

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


def _node_args(ports: PortPool, temp_dir: Path, cpus: int, resources: dict | None) -> list[str]:
    lo, hi = ports.range()
    args = ["--temp-dir", str(temp_dir), "--num-cpus", str(cpus), "--num-gpus", "0",
            "--min-worker-port", str(lo), "--max-worker-port", str(hi),
            "--dashboard-agent-listen-port", str(ports.one()),
            "--dashboard-agent-grpc-port", str(ports.one()),
            "--runtime-env-agent-port", str(ports.one()),
            "--metrics-export-port", str(ports.one()),
            "--object-store-memory", str(300 * 1024**2),  # 300 MB; the micro blends are a few MB
            "--disable-usage-stats"]
    if resources:
        args += ["--resources", json.dumps(resources)]
    return args


def start_cluster(attempts: int = 2) -> Cluster:
    """A two-node cluster whose head accepts jobs. A start whose head never does is torn down
    and started afresh on new ports, once, with what its logs said kept in the next error."""
    failures = []
    for _ in range(attempts):
        cluster = _start_once()
        try:
            _wait_for_job_agent(cluster)
            return cluster
        except RuntimeError as e:
            failures.append(f"{e}\n{cluster.log_tails()}")
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
    raise RuntimeError("the test cluster's head never accepted a job:\n" + "\n---\n".join(failures))


def _start_once() -> Cluster:
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
    ports = PortPool()
    gcs_port, dash_port = ports.one(), ports.one()
    gcs = f"127.0.0.1:{gcs_port}"
    head = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port),
            "--ray-client-server-port", str(ports.one()),
            *_node_args(ports, root / "head", 1, {"head": 1})]
    node2 = ["start", "--address", gcs, "--node-ip-address", "127.0.0.1",
             *_node_args(ports, root / "node2", 1, {"node2": 1})]
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


def _wait_for_job_agent(cluster: Cluster, timeout: float = 90) -> None:
    """Submit a no-op job until the head takes it. ALIVE nodes are not enough: the head's
    dashboard agent (which runs every job's supervisor) registers a few seconds later, and a
    head whose agent died stays ALIVE while refusing every job."""
    deadline = time.time() + timeout
    for i in itertools.count():
        p = cluster.ray("job", "submit", "--address", cluster.dashboard_url, "--submission-id",
                        f"tr-e2e-ready-{i}", "--no-wait", "--", "true", check=False)
        if p.returncode == 0:
            return
        if time.time() > deadline:
            raise RuntimeError(f"no job accepted in {timeout:.0f} s; the last refusal: {p.stderr.strip()[-600:]}")
        time.sleep(2)


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
