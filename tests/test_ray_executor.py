"""The Ray executor's safety: its own instance listens on 127.0.0.1 even when ray was imported first, and a
worker that dies is retried, then reported with the cell's name. Each Ray start costs 10-20 s: one in a
subprocess, one shared by this module's other tests (cells here are stand-ins, no training)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from unlearnlib.config import ConfigError
from unlearnlib.harness import executors
from unlearnlib.harness.plan import PACKAGE, Cell
from unlearnlib.harness.store import Store

_LOOPBACK = textwrap.dedent("""
    import ray  # first, as a notebook or another library may have done
    from unlearnlib.harness.executors import ray_init
    ctx = ray_init(1)
    print("node", ctx.address_info["node_ip_address"], flush=True)
    ray.shutdown()
""")


def test_the_local_instance_listens_on_loopback_even_when_ray_was_imported_first(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}  # as in a fresh shell
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE.parent), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", _LOOPBACK], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "node 127.0.0.1" in out.stdout.splitlines(), out.stdout


def test_an_instance_on_another_address_is_stopped_and_refused(monkeypatch):
    ray = executors.import_ray(local=True)
    import ray._private.ray_constants as ray_constants

    assert ray_constants.ENABLE_RAY_CLUSTER is False  # what services.get_node_ip_address reads at each call
    stopped = []
    monkeypatch.setattr(ray, "init", lambda **kw: SimpleNamespace(address_info={"node_ip_address": "192.0.2.7"}))
    monkeypatch.setattr(ray, "shutdown", lambda: stopped.append(True))
    with pytest.raises(ConfigError, match="Ray would listen on 192.0.2.7, not 127.0.0.1"):
        executors.ray_init(1)
    assert stopped == [True]


# ----------------------------------------------------------------------------------------------
# a worker that dies (killed, out of memory): retried, then reported with the cell's name


@pytest.fixture(scope="module")
def ray_instance():
    ray = executors.import_ray(local=True)
    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    executors.ray_init(2)
    yield ray
    ray.shutdown()


def _plan(*keys: str):
    cells = [Cell(k, "original", 0, "tiny", "all", "original", dataset="toy") for k in keys]
    return SimpleNamespace(device=torch.device("cpu"), spec={}, threads=1, cells=cells,
                           cell=lambda key: next(c for c in cells if c.key == key))


def _dying_body():
    """A task body (pickled by value: a closure) that kills its own worker: cell ``dies-once`` on its first
    attempt only (a flag file in the store folder remembers it), cell ``dies-always`` on every attempt."""
    import signal
    from pathlib import Path

    def body(payload: dict, key: str, *_deps) -> str:
        flag = Path(payload["cache"]) / f"{key}.attempted"
        first = not flag.exists()
        flag.touch()
        if key == "dies-always" or first:
            os.kill(os.getpid(), signal.SIGKILL)
        return key

    return body


def test_a_worker_killed_once_is_retried_and_the_run_finishes(ray_instance, tmp_path):
    ex = executors.RayExecutor(workers=2)
    ex.body = _dying_body()
    plan, done = _plan("dies-once"), []
    ex.run(plan, Store(tmp_path, say=lambda m: None), plan.cells, on_done=done.append)
    assert [c.key for c in done] == ["dies-once"] and (tmp_path / "dies-once.attempted").exists()
    assert ray_instance.is_initialized()  # the executor leaves an instance it did not start


def test_a_worker_that_always_dies_fails_with_the_cells_name(ray_instance, tmp_path):
    ex = executors.RayExecutor(workers=2)
    ex.body = _dying_body()
    plan = _plan("dies-always")
    with pytest.raises(RuntimeError, match=r"^cell 'toy tiny seed 0 all: train the original' failed on a Ray "
                                           r"worker: WorkerCrashedError: \S.*$"):
        ex.run(plan, Store(tmp_path, say=lambda m: None), plan.cells, on_done=lambda c: None)
