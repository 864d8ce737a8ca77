"""Reliability of what a run keeps and shares: the thread registry in the shared temp folder, the thread count in
the cells' keys, the cell store's edge cases (races, failed writes, forged files), the run folder's swap and its
lock, and the bounds on device, threads and workers. No Ray here (see test_ray_executor.py)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest
import torch

from unlearnlib import threads
from unlearnlib.config import ConfigError
from unlearnlib.harness import RunFolder, build_plan
from unlearnlib.harness.executors import check_code, make_executor
from unlearnlib.harness.plan import resolve_device
from unlearnlib.harness.store import CorruptFile, Store, atomic_write, sha256_bytes, write_json

DEAD_PID = 999_999_999  # above any pid_max: never a live process


# ----------------------------------------------------------------------------------------------
# the thread registry in the shared temp folder (D9)


@pytest.fixture
def shared_tmp(tmp_path, monkeypatch) -> Path:
    """A temp folder standing in for the machine's shared one (TMPDIR), with a fresh warning memory."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(threads, "_WARNED", set(), raising=False)
    return shared


def test_the_registry_never_follows_a_planted_symlink(shared_tmp, tmp_path):
    victim = tmp_path / "victim-folder"
    victim.mkdir()
    (victim / "4000000").write_text("a file of the victim named like a pid")
    (victim / "notes.txt").write_text("notes")
    base = shared_tmp / f"unlearnlib-{os.getuid()}"
    base.mkdir()
    (base / "computing").symlink_to(victim)  # planted by another user before the first run
    with pytest.warns(RuntimeWarning, match="symlink"):
        assert threads.computing_processes() == 0
    with threads.computing():  # registers nowhere, and counts itself alone
        assert threads.computing_processes() == 1
    assert sorted(p.name for p in victim.iterdir()) == ["4000000", "notes.txt"]


def test_the_registry_refuses_a_folder_of_another_user(shared_tmp):
    if os.getuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    base = shared_tmp / f"unlearnlib-{os.getuid()}"
    base.mkdir(mode=0o777)
    os.chown(base, 4242, 4242)
    with pytest.warns(RuntimeWarning, match="another user"):
        with threads.computing():
            pass
    assert list(base.iterdir()) == []


def test_the_registry_is_private_and_holds_regular_files(shared_tmp):
    with threads.computing():
        base = shared_tmp / f"unlearnlib-{os.getuid()}"
        entry = base / "computing" / str(os.getpid())
        for d in (base, base / "computing"):
            assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700, d
        assert stat.S_ISREG(os.lstat(entry).st_mode)
        (base / "computing" / str(DEAD_PID)).mkdir()  # not a file: neither counted nor removed
        assert threads.computing_processes() == 1
    assert not entry.exists() and (base / "computing" / str(DEAD_PID)).is_dir()


# ----------------------------------------------------------------------------------------------
# the run's thread count: resolved once, and part of the CPU cells' keys (D8)


def test_the_run_share_counts_this_process_among_those_computing(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "_registry", lambda: tmp_path)
    monkeypatch.setattr(threads, "cpu_budget", lambda: 8)
    monkeypatch.delenv("UNLEARNLIB_THREADS", raising=False)
    assert threads.run_share() == 8
    (tmp_path / str(os.getppid())).touch()  # another live process computing
    assert threads.run_share() == 4 and threads.run_share(3) == 3
    ex = make_executor("local")
    assert ex.threads_for(torch.device("cpu")) == 4 and "4 thread(s)" in ex.describe()
    mine = tmp_path / str(os.getpid())
    assert mine.is_file()  # registered before counting: a run starting now sees this one
    assert threads.run_share() == 4  # counted once
    with threads.computing():  # the run's block takes the claim over and ends it
        assert mine.is_file()
    assert not mine.exists()


def test_plans_at_one_and_two_threads_share_no_cell(fmnist_system_dir, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    methods = ["retrain", "finetune"]
    one = build_plan("unsir", "smoke", device="cpu", methods=methods, threads=1)
    again = build_plan("unsir", "smoke", device="cpu", methods=methods, threads=1)
    two = build_plan("unsir", "smoke", device="cpu", methods=methods, threads=2)
    assert [c.key for c in one.cells] == [c.key for c in again.cells]
    assert one.threads == 1 and one.spec["threads"] == 1 and two.spec["threads"] == 2
    assert len(one.cells) == len(two.cells)
    assert not {c.key for c in one.cells} & {c.key for c in two.cells}  # no cell is reused across counts
    models = {c.model_key for c in one.cells if c.model_key}
    assert models and not models & {c.model_key for c in two.cells if c.model_key}  # nor a checkpoint


# ----------------------------------------------------------------------------------------------
# the cell store (D11)


def _linear() -> torch.nn.Module:
    return torch.nn.Linear(2, 2)


def test_a_forged_checkpoint_that_is_no_state_dict_is_refused_and_set_aside(tmp_path):
    store = Store(tmp_path, say=lambda msg: None)
    pt = store.checkpoint_path("k")
    pt.parent.mkdir(parents=True)
    torch.save([torch.zeros(2)], pt)  # a list of tensors: weights_only loads it, the sha256 matches
    write_json(pt.with_suffix(".json"), {"key": "k", "file_sha256": sha256_bytes(pt.read_bytes())})
    said = []
    store.say = said.append
    assert store.load_model("k", _linear()) is None
    assert "not a state dict" in said[0]
    assert (tmp_path / "checkpoints" / "k.pt.corrupt").exists() and not pt.exists()


def test_setting_aside_a_file_another_process_moves_at_the_same_time(tmp_path, monkeypatch):
    """Two workers find the same corrupt record; the other one moves it away right after this one looks."""
    store = Store(tmp_path, say=lambda msg: None)
    path = store.record_path("r")
    path.parent.mkdir()
    path.write_text("{cut")
    other = {"moved": False}

    def the_other_worker_moves_it():
        if not other["moved"]:
            other["moved"] = True
            os.replace(path, path.with_name("r.json.corrupt"))

    real_exists, real_link = Path.exists, os.link

    def exists(self, *a, **kw):
        out = real_exists(self, *a, **kw)
        if self == path and out:
            the_other_worker_moves_it()
        return out

    def link(src, dst, *a, **kw):
        if Path(src) == path:
            the_other_worker_moves_it()
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setattr(os, "link", link)
    said = []
    store.say = said.append
    store.set_aside(CorruptFile(f"{path}: not readable JSON"), path)  # no FileNotFoundError
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["r.json.corrupt"]
    assert said == [f"   integrity: {path}: not readable JSON; moved aside (nothing left), rebuilding"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    target = tmp_path / "checkpoints" / "k6.pt"
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"x" * 100)
    monkeypatch.undo()
    assert list(target.parent.iterdir()) == []
    atomic_write(target, b"abc")
    assert target.read_bytes() == b"abc" and [p.name for p in target.parent.iterdir()] == ["k6.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_stale_temporary_files_are_removed_when_a_store_opens(tmp_path):
    for sub in ("checkpoints", "cells", "logits"):
        (tmp_path / sub).mkdir()
    old = tmp_path / "checkpoints" / ".k.pt.tmp123"  # the name of an older version's temporary file
    fresh = tmp_path / "cells" / ".r.json.a1b2c3.tmp"  # a write going on now
    keep = tmp_path / "logits" / "k.npz"
    for p in (old, fresh, keep):
        p.write_bytes(b"x")
    two_days = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days, two_days))
    os.utime(keep, (two_days, two_days))
    Store(tmp_path, say=lambda msg: None)
    assert not old.exists() and fresh.exists() and keep.exists()


# ----------------------------------------------------------------------------------------------
# the run folder: its swap, its durability, its lock (D13, D19)


def _scratch(parent: Path, name: str, complete: bool, text: str) -> Path:
    d = parent / name
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text(text)
    if complete:
        (d / RunFolder.MARKER).write_text("")
    return d


@pytest.mark.parametrize("left,restored", [
    ({f".smoke.tmp-{DEAD_PID}": True}, "new"),  # killed after marking its folder complete, before the swap
    ({f".smoke.old-{DEAD_PID}": False, f".smoke.tmp-{DEAD_PID}": True}, "new"),  # killed between the renames
    ({f".smoke.old-{DEAD_PID}": False, f".smoke.tmp-{DEAD_PID}": False}, "old"),  # the new one was incomplete
    ({f".smoke.tmp-{DEAD_PID}": False}, None),  # killed while writing: nothing to restore
])
def test_a_swap_killed_half_way_is_restored_not_deleted(tmp_path, left, restored):
    parent = tmp_path / "unsir"
    for name, complete in left.items():
        _scratch(parent, name, complete, "old" if ".old-" in name else "new")
    with RunFolder("unsir", "smoke", root=tmp_path) as rf:
        if restored is None:
            assert not rf.final.exists()
        else:
            assert (rf.final / "metrics.csv").read_text() == restored
            assert not (rf.final / RunFolder.MARKER).exists()
        assert sorted(p.name for p in parent.iterdir()) == sorted(
            [rf.tmp.name, rf.lock_path.name] + ([] if restored is None else ["smoke"]))  # the rest cleaned


def test_commit_makes_the_files_and_folders_durable(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    with RunFolder("unsir", "smoke", root=tmp_path) as rf:
        (rf.tmp / "metrics.csv").write_text("a,b\n")
        monkeypatch.setattr(os, "fsync", fsync)
        rf.commit()
    monkeypatch.undo()
    parent = str(tmp_path / "unsir")
    assert any(s.endswith("/metrics.csv") for s in synced), synced  # the file, before the swap
    assert parent in synced and str(rf.final) in synced  # the renames
    assert sorted(p.name for p in rf.final.iterdir()) == ["metrics.csv"]  # the marker is gone


def test_a_run_that_cannot_be_loaded_is_reported_in_one_line(tmp_path, monkeypatch, caplog):
    from unlearnlib.results import latest_runs

    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(tmp_path))
    d = tmp_path / "unsir" / "smoke"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text("truncated")  # the rest of the folder lost
    with caplog.at_level(logging.WARNING):
        assert latest_runs("unsir") == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "results/unsir/smoke: not loaded" in lines[0]


def test_the_lock_names_the_host_and_process_holding_it(tmp_path):
    with RunFolder("unsir", "smoke", root=tmp_path) as rf:
        assert rf.lock_path.read_text().startswith(f"process {socket.gethostname()}:{os.getpid()}, started ")


# ----------------------------------------------------------------------------------------------
# bounds on device, threads and workers (D12, D21); the code a Ray worker runs (D20)


@pytest.mark.parametrize("device", ["meta", "mps", "xla", "cpu:7", "CPU", "cuda:x", "cuda:-1", ""])
def test_only_the_devices_the_suite_runs_on_are_accepted(device):
    with pytest.raises(ConfigError, match=r"device: .*valid: auto, cpu, cuda, cuda:N"):
        resolve_device(device)


def test_a_cuda_device_is_named_as_asked_and_its_index_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda:0' was asked for but CUDA is not available"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="'cuda:1': this machine has 1 CUDA device.*valid: cuda, cuda:0$"):
        resolve_device("cuda:1")


def test_threads_and_workers_beyond_this_machine_are_refused(monkeypatch):
    monkeypatch.setattr(threads, "cpu_budget", lambda: 2)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("UNLEARNLIB_THREADS", raising=False)
    with pytest.raises(ConfigError, match=r"threads: 3 is more than the 2 core\(s\).*valid: 1\.\.2"):
        make_executor("local", threads=3)
    with pytest.raises(ConfigError, match=r"workers: 3 is more than the 2 core\(s\).*valid: 1\.\.2"):
        make_executor("ray", workers=3)
    monkeypatch.setenv("UNLEARNLIB_THREADS", "64")
    with pytest.raises(ConfigError, match="UNLEARNLIB_THREADS: 64 is more than"):
        make_executor("local")
    monkeypatch.setenv("UNLEARNLIB_THREADS", "many")
    with pytest.raises(ConfigError, match="UNLEARNLIB_THREADS='many'"):
        make_executor("local")
    monkeypatch.delenv("UNLEARNLIB_THREADS")
    assert make_executor("ray", workers=2, threads=2).threads_for(torch.device("cpu")) == 2
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"workers: 2 is more than the 1 cell\(s\) this machine.s 1 GPU\(s\)"
                                          r".*valid: 1\.\.1"):
        make_executor("ray", workers=2).threads_for(torch.device("cuda"))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a cluster's nodes: not this machine's bounds
    ex = make_executor("ray", workers=64, threads=8)
    assert ex.threads_for(torch.device("cuda")) == 8 and make_executor("ray").threads_for(torch.device("cpu")) is None


def test_a_worker_with_other_code_refuses_to_compute():
    from unlearnlib.harness.executors import RAY_CODE
    from unlearnlib.harness.plan import code_fingerprint

    check_code(code_fingerprint(*RAY_CODE))  # the same code: fine
    with pytest.raises(RuntimeError, match=f"worker {socket.gethostname()} runs other unlearnlib code "
                                           r"\(fingerprint [0-9a-f]{16} != the driver's 0123456789abcdef"):
        check_code("0123456789abcdef")
    assert "papers/unsir.yaml" in RAY_CODE  # the papers' settings rebuild the plan on the worker



@pytest.mark.parametrize("paper,profile", [("../escaped", "cpu"), ("unsir", "../x"), (".hidden", "cpu"),
                                           ("unsir", ""), ("a/b", "cpu")])
def test_a_run_folder_is_never_built_outside_its_paper_folder(tmp_path, paper, profile):
    """Review §1.2: RunFolder itself refuses a name that is not a plain folder name (the CLI checks first)."""
    with pytest.raises(ValueError, match="not a plain folder name"):
        RunFolder(paper, profile, root=tmp_path / "results")
    assert sorted(tmp_path.rglob("*")) == []
