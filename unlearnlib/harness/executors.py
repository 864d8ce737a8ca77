"""Executors run the unfinished cells of a plan: ``local`` in this process, in order (the default: nothing to
install or start), or ``ray`` as Ray tasks — on a local instance started for the run with ``workers``
workers, or on the cluster that ``RAY_ADDRESS`` names. Ray tasks receive the plan's spec, a cell key and
the cell-store path, and return the key: models and logits travel through the cell store, never as objects.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Callable

import torch

from .. import threads as _threads
from ..config import ConfigError
from ..methods import method_spec
from .cells import CellRunner
from .plan import EXECUTORS, PACKAGE, Cell, RunPlan, build_plan, code_fingerprint
from .store import Store

OnDone = Callable[[Cell], None]


def cells_per_gpu_option(value=None) -> int:
    """``cells_per_gpu``: how many cells share one GPU on Ray (each task asks for ``1/cells_per_gpu`` of a GPU);
    the argument, else ``$UNLEARNLIB_CELLS_PER_GPU`` (which reaches ``make`` and the notebooks), else 1."""
    what = "cells_per_gpu"
    if value is None or value == "":
        value, what = os.environ.get("UNLEARNLIB_CELLS_PER_GPU", "") or 1, "UNLEARNLIB_CELLS_PER_GPU"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(f"{what}: expected an integer from 1 to 64 (cells sharing one GPU on Ray), got {value!r}")
    return value


def make_executor(name: str, workers: int | None = None, threads: int | None = None, progress: bool = True,
                  cells_per_gpu: int | None = None):
    if name not in EXECUTORS:
        raise ConfigError(f"executor: {name!r}; valid: {', '.join(EXECUTORS)}")
    per_gpu = cells_per_gpu_option(cells_per_gpu)
    for what, v in (("workers", workers), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"{what}: expected a positive integer (0 or empty: automatic), got {v!r}")
    on_this_machine = name == "local" or not os.environ.get("RAY_ADDRESS")
    budget = _threads.cpu_budget()
    try:
        fixed = _threads.fixed_threads()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if on_this_machine:  # a cluster's nodes may have more cores than this one
        for what, v in (("threads", threads), ("UNLEARNLIB_THREADS", fixed), ("workers", workers)):
            if v and v > budget:
                raise ConfigError(f"{what}: {v} is more than the {budget} core(s) this process may use; valid: "
                                  f"1..{budget} (0 or empty: automatic)"
                                  + ("; a Ray cluster (RAY_ADDRESS) may have more" if what == "workers" else ""))
    if name == "local":
        if workers not in (None, 0, 1):
            raise ConfigError(f"workers: the local executor runs one cell at a time (got {workers}); "
                              f"use executor='ray' for {workers} workers")
        if cells_per_gpu not in (None, "", 1):
            raise ConfigError(f"cells_per_gpu: the local executor runs one cell at a time (got {cells_per_gpu}); "
                              f"use executor='ray' to share a GPU among {cells_per_gpu} cells")
        return LocalExecutor(threads=threads or None, progress=progress)
    return RayExecutor(workers=workers or None, threads=threads or None, cells_per_gpu=per_gpu)


class LocalExecutor:
    """In this process, in plan order. Torch threads: the run's count (the fair share of the cores when the run
    starts, unless fixed), the same for every cell."""

    name = "local"

    def __init__(self, threads: int | None = None, progress: bool = True) -> None:
        self.threads, self.progress = threads, progress

    def describe(self) -> str:
        return f"local executor, {self.threads or 'fair share of ' + str(_threads.cpu_budget())} thread(s)"

    def threads_for(self, device: torch.device) -> int:
        """The run's torch threads per cell, resolved once (it goes into the plan and the cells' keys). The process
        counts as computing from here on (until its run's ``computing`` block ends), so that a run starting now
        sees this one."""
        if not (self.threads or _threads.fixed_threads()):
            self._claimed = _threads.claim()
        self.threads = _threads.run_share(self.threads)
        return self.threads

    def __del__(self) -> None:  # a run that failed before computing leaves no claim behind
        if getattr(self, "_claimed", False):
            _threads.release_claim()

    def run(self, plan: RunPlan, store: Store, todo: list[Cell], on_done: OnDone, say=print) -> None:
        runner = CellRunner(plan, store, progress=self.progress, threads=self.threads, say=say)
        for cell in todo:
            runner.run(cell)
            on_done(cell)


# ----------------------------------------------------------------------------------------------------------
# Ray

_WORKER: dict = {}  # per Ray worker process: the plan and runner of the spec it last ran


def _worker_threads(requested: int | None) -> int:
    """A Ray worker's share: the node's cores divided by the CPUs Ray may schedule on it (one per cell)."""
    if requested or _threads.fixed_threads():
        return requested or _threads.fixed_threads()
    if "node_cpus" not in _WORKER:
        import ray

        node = ray.get_runtime_context().get_node_id()
        cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
        _WORKER["node_cpus"] = max(1, int(cpus))
    return max(1, _threads.cpu_budget() // _WORKER["node_cpus"])


# the code a Ray worker must share with the driver: the whole package and the paper files
RAY_CODE = (".", *sorted(f"papers/{p.name}" for p in (PACKAGE / "papers").glob("*.yaml")))


def check_code(driver: str, host: str | None = None) -> None:
    """Refuse to compute on a worker whose unlearnlib differs from the driver's (another checkout on that node)."""
    mine = code_fingerprint(*RAY_CODE)
    if mine != driver:
        raise RuntimeError(f"worker {host or socket.gethostname()} runs other unlearnlib code (fingerprint {mine} != "
                           f"the driver's {driver}, from {PACKAGE}): install the same commit on every node")


def _worker_runner(payload: dict) -> CellRunner:
    """This worker's runner of the payload's plan (rebuilt once per worker and plan)."""
    spec = dict(payload["spec"])
    if spec["device"].startswith("cuda"):
        spec["device"] = "cuda"  # Ray makes the GPU it assigned the only visible one
    ident = repr(sorted(spec.items())) + payload["cache"]
    if _WORKER.get("ident") != ident:
        check_code(payload["code"])
        plan = build_plan(**spec)
        store = Store(Path(payload["cache"]), say=lambda msg: None)
        _WORKER.update(ident=ident, runner=CellRunner(plan, store, progress=False,
                                                      threads=_worker_threads(payload["threads"]),
                                                      say=lambda msg: None))
    return _WORKER["runner"]


def _ray_cell(payload: dict, key: str, *_deps) -> str:
    """Body of a Ray task: rebuild the plan (once per worker), run the cell unless it is already stored."""
    runner = _worker_runner(payload)
    cell = runner.plan.cell(key)
    if not runner.finished(cell):  # another run on the same cluster may have stored it meanwhile
        runner.run(cell)
    return key


def _ray_train(payload: dict, key: str) -> str:
    """Body of the training task of a cell that trains from scratch (retrain): no dependencies, no original."""
    runner = _worker_runner(payload)
    cell = runner.plan.cell(key)
    if not runner.store.has_model(cell.model_key):
        runner.train_from_scratch(cell)
    return key


def _loopback(address: str | None) -> bool:
    host = (address or "").split("://")[-1].rsplit(":", 1)[0]
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def _loopback_ip(ip: str | None) -> bool:
    try:
        return ipaddress.ip_address(ip or "").is_loopback
    except ValueError:
        return False


def import_ray(local: bool):
    """``import ray``; for a local instance (or one on this machine's loopback address), make Ray use the loopback
    address only: a run's own instance serves this machine alone. Ray reads that choice from the environment when
    it is first imported, and its services read the module attribute each time, so it is set in both places
    (a notebook may have imported ray before)."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # 0: single machine, 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a pinned dependency
        raise ConfigError("executor 'ray' needs the ray package: pip install 'ray==2.60.0'") from None
    if local:
        import ray._private.ray_constants as ray_constants  # read by services.get_node_ip_address at each call

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def ray_init(workers: int | None = None, address: str | None = None, cuda: bool = False):
    """Start a local Ray instance (``workers`` CPUs), bound to 127.0.0.1 (checked), or connect to ``address``,
    with this suite's settings: the workers see the driver's ``UNLEARNLIB_*`` variables and import the same
    unlearnlib."""
    ray = import_ray(local=not address or _loopback(address))
    env = {k: v for k, v in os.environ.items() if k.startswith("UNLEARNLIB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                  runtime_env={"env_vars": env})
    if address:
        return ray.init(address=address, **common)
    ctx = ray.init(num_cpus=workers, num_gpus=None if cuda else 0, object_store_memory=200 * 1024**2, **common)
    ip = ctx.address_info.get("node_ip_address")
    if not _loopback_ip(ip):
        ray.shutdown()
        raise ConfigError(f"Ray would listen on {ip}, not 127.0.0.1: its ports would be open to the network. Restart "
                          f"the kernel or process (ray was set up before unlearnlib could make it local) and run "
                          f"again, or start a cluster yourself and set RAY_ADDRESS")
    return ctx


def from_scratch(cell: Cell) -> bool:
    """A method cell whose model is trained from scratch (retrain): its training needs no original."""
    return cell.kind == "method" and bool(cell.model_key) and method_spec(cell.method).trains_from_scratch


class RayExecutor:
    """Cells as Ray tasks (one CPU each; on CUDA one GPU each, or ``1/cells_per_gpu`` of one); dependencies as Ray
    object references. A cell that trains from scratch (retrain) is two tasks: its training, with no dependency
    (it starts at once, beside the originals), and its evaluation, after its original's. A task whose worker dies
    (killed, out of memory, its node lost) is retried twice (cells are idempotent); then the run stops with an
    error naming the cell."""

    name = "ray"
    body = staticmethod(_ray_cell)  # what a task runs (tests put a stand-in here)
    train_body = staticmethod(_ray_train)  # the training half of a retrain

    def __init__(self, workers: int | None = None, threads: int | None = None, cells_per_gpu: int = 1) -> None:
        self.workers, self.threads, self.cells_per_gpu = workers, threads, cells_per_gpu
        self.address = os.environ.get("RAY_ADDRESS") or None

    def describe(self) -> str:
        where = f"cluster at {self.address}" if self.address else f"local instance, {self._workers()} worker(s)"
        share = f", {self.cells_per_gpu} cells per GPU" if self.cells_per_gpu > 1 else ""
        return f"ray executor ({where}{share})"

    def _workers(self, cuda: bool = False) -> int:
        if self.workers:
            return self.workers
        if cuda:
            return max(1, torch.cuda.device_count()) * self.cells_per_gpu
        return _threads.cpu_budget()

    def threads_for(self, device: torch.device) -> int | None:
        """The run's torch threads per cell: fixed (``threads``, ``UNLEARNLIB_THREADS``), else the cores divided by
        the local instance's workers; on a cluster, unless fixed, None (each node's share)."""
        cuda = device.type == "cuda"
        n = torch.cuda.device_count() * self.cells_per_gpu
        if cuda and not self.address and self.workers and self.workers > n:
            raise ConfigError(f"workers: {self.workers} is more than the {n} cell(s) this machine's "
                              f"{torch.cuda.device_count()} GPU(s) hold at once ({self.cells_per_gpu} per GPU: "
                              f"cells_per_gpu); valid: 1..{n} (0 or empty: {self.cells_per_gpu} per GPU)")
        fixed = self.threads or _threads.fixed_threads()
        if fixed or self.address:
            return fixed
        return max(1, _threads.cpu_budget() // self._workers(cuda))

    def run(self, plan: RunPlan, store: Store, todo: list[Cell], on_done: OnDone, say=print) -> None:
        ray = import_ray(local=not self.address or _loopback(self.address))
        cuda = plan.device.type == "cuda"
        initialised = not ray.is_initialized()  # then it disconnects (and stops an instance it started) at the end
        if initialised:
            ray_init(self._workers(cuda), self.address, cuda)
        try:
            resources = dict(num_cpus=1, num_gpus=1 / self.cells_per_gpu if cuda else 0, max_retries=2,
                             retry_exceptions=False)  # retried on system failures only: a worker died
            task = ray.remote(self.body).options(**resources)
            train = ray.remote(self.train_body).options(**resources)
            payload = {"spec": plan.spec, "cache": str(store.root), "threads": plan.threads or self.threads,
                       "code": code_fingerprint(*RAY_CODE)}
            refs: dict[str, object] = {}
            for cell in todo:  # plan order is a topological order
                deps = [refs[d] for d in cell.deps if d in refs]
                grouped = any(plan.cell(d).kind == "group" for d in cell.deps)  # its group cell trains it
                if from_scratch(cell) and not grouped and not store.has_model(cell.model_key):
                    deps.append(train.remote(payload, cell.key))  # free of the original: starts at once
                refs[cell.key] = task.remote(payload, cell.key, *deps)
            pending = {ref: key for key, ref in refs.items()}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = plan.cell(pending.pop(ref))
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayError as e:  # a task's exception, or its worker or node lost
                        cause = e.cause if getattr(e, "cause", None) is not None else e
                        first = next(iter(str(cause).strip().splitlines()), "")
                        raise RuntimeError(f"cell '{cell.label}' failed on a Ray worker: "
                                           f"{type(cause).__name__}: {first}") from (None if cause is e else cause)
                    on_done(cell)
        finally:
            if initialised:
                ray.shutdown()
