"""Everything a run keeps on disk: the cell store (checkpoints, cell records, logits, each under its key with a
sha256) and the run folder ``results/<paper>/<profile>/`` (written atomically, under a lock).

Layout under the cache root (``$UNLEARNLIB_CACHE``)::

    checkpoints/<key>.pt     state dict (torch.save), loaded with weights_only=True and strict keys
    checkpoints/<key>.json   its metadata: sha256 of the .pt, seconds, device, threads
    cells/<key>.json         a finished cell's record (rows, timings, traces) and the sha256 of its logits
    logits/<key>.npz         the logits of the model the cell evaluated (float32)

Every JSON file is ``{"format": 1, "sha256": <of the body>, "body": {...}}``. A file that is missing a part,
truncated, corrupted or unreadable is reported in one line, moved aside (``*.corrupt``) and rebuilt; it is
never loaded. Writes go to a temporary file that is renamed into place, so a killed process leaves either the
old file, the new one, or a temporary file that no reader looks at.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..paths import cache_root, results_root
from ..threads import pid_alive

FORMAT = 1


class CorruptFile(Exception):
    """A stored file failed its integrity check (the message says which file and what was wrong)."""


class RunLockedError(RuntimeError):
    """Another process is writing the same paper and profile."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(body: Any) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json(path: Path, body: dict) -> None:
    """``body`` with its sha256, atomically."""
    atomic_write(path, json.dumps({"format": FORMAT, "sha256": sha256_bytes(_canonical(body)), "body": body},
                                  indent=1, default=str).encode())


def read_json(path: Path) -> dict:
    """The body of a file written by :func:`write_json`; :class:`CorruptFile` if it is not intact."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFile(f"{path}: not readable JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or "body" not in raw or "sha256" not in raw:
        raise CorruptFile(f"{path}: no checksummed body (written by another version of the suite?)")
    if sha256_bytes(_canonical(raw["body"])) != raw["sha256"]:
        raise CorruptFile(f"{path}: contents do not match their sha256 (modified or corrupted)")
    return raw["body"]


class Store:
    """Checkpoints, cell records and logits under their keys (see the module docstring)."""

    def __init__(self, root: Path | None = None, say: Callable[[str], None] = print) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.say = say

    # -- paths --------------------------------------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{key}.pt"

    def record_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.json"

    def logits_path(self, key: str) -> Path:
        return self.root / "logits" / f"{key}.npz"

    # -- integrity ----------------------------------------------------------------------------------------
    def set_aside(self, err: CorruptFile, *paths: Path) -> None:
        """Report a failed check in one line and move the files out of the way (``<name>.corrupt``)."""
        moved = []
        for p in paths:
            if p.exists():
                dest = p.with_name(p.name + ".corrupt")
                n = 1
                while dest.exists():
                    n += 1
                    dest = p.with_name(f"{p.name}.corrupt{n}")
                p.replace(dest)
                moved.append(dest.name)
        self.say(f"   integrity: {err}; moved aside ({', '.join(moved) or 'nothing left'}), rebuilding")

    # -- checkpoints --------------------------------------------------------------------------------------
    def _checkpoint_meta(self, key: str) -> dict:
        pt = self.checkpoint_path(key)
        meta = read_json(pt.with_suffix(".json"))
        if not pt.exists():
            raise CorruptFile(f"{pt}: missing (its metadata exists)")
        if sha256_file(pt) != meta.get("file_sha256"):
            raise CorruptFile(f"{pt}: does not match the sha256 in its metadata (truncated or modified)")
        return meta

    def has_model(self, key: str) -> bool:
        """Whether an intact checkpoint is stored under ``key`` (a corrupt one is reported and set aside)."""
        pt = self.checkpoint_path(key)
        if not pt.with_suffix(".json").exists():
            return False
        try:
            self._checkpoint_meta(key)
        except CorruptFile as e:
            self.set_aside(e, pt, pt.with_suffix(".json"))
            return False
        return True

    def load_model(self, key: str, model: torch.nn.Module) -> dict | None:
        """Load the checkpoint into ``model`` (strict keys, weights only) and return its metadata; None when
        there is none or it failed a check (reported, set aside)."""
        pt = self.checkpoint_path(key)
        if not pt.with_suffix(".json").exists():
            return None
        try:
            meta = self._checkpoint_meta(key)
            try:
                state = torch.load(pt, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
                raise CorruptFile(f"{pt}: torch.load failed ({type(e).__name__}: {str(e)[:80]})") from None
            try:
                model.load_state_dict(state, strict=True)  # pitfall 5: never strict=False
            except RuntimeError as e:
                raise CorruptFile(f"{pt}: does not fit the model ({str(e).splitlines()[0][:100]})") from None
        except CorruptFile as e:
            self.set_aside(e, pt, pt.with_suffix(".json"))
            return None
        return meta

    def save_model(self, key: str, model: torch.nn.Module, meta: dict) -> None:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
        data = buf.getvalue()
        pt = self.checkpoint_path(key)
        atomic_write(pt, data)
        write_json(pt.with_suffix(".json"), {**meta, "key": key, "file_sha256": sha256_bytes(data)})

    # -- cell records -------------------------------------------------------------------------------------
    def load_record(self, key: str) -> dict | None:
        """A finished cell's record (its logits file checked too); None when absent or not intact."""
        path = self.record_path(key)
        if not path.exists():
            return None
        lp = self.logits_path(key)
        try:
            rec = read_json(path)
            if rec.get("logits_sha256"):
                if not lp.exists():
                    raise CorruptFile(f"{lp}: missing (its cell record exists)")
                if sha256_file(lp) != rec["logits_sha256"]:
                    raise CorruptFile(f"{lp}: does not match the sha256 in its cell record (truncated or modified)")
        except CorruptFile as e:
            self.set_aside(e, path, lp)
            return None
        return rec

    def save_record(self, key: str, record: dict, logits: dict[str, np.ndarray] | None = None) -> None:
        """Logits first, then the record that names their sha256: a record on disk means the cell finished."""
        record = dict(record, key=key)
        if logits:
            buf = io.BytesIO()
            np.savez(buf, **logits)
            data = buf.getvalue()
            atomic_write(self.logits_path(key), data)
            record["logits_sha256"] = sha256_bytes(data)
        write_json(self.record_path(key), record)

    def load_logits(self, key: str) -> dict[str, np.ndarray]:
        rec = self.load_record(key)
        if rec is None or not rec.get("logits_sha256"):
            raise CorruptFile(f"{self.logits_path(key)}: no intact logits stored for cell {key}")
        with np.load(self.logits_path(key)) as z:
            return {k: z[k] for k in z.files}

    # -- one builder per expensive key --------------------------------------------------------------------
    @contextlib.contextmanager
    def building(self, key: str) -> Iterator[None]:
        """Held while a model is trained under ``key``: a second process (another paper on the same Ray
        cluster, say) waits for it and then loads the result instead of training it again."""
        d = self.root / "locks"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------------------
# the run folder


class RunFolder:
    """``results/<paper>/<profile>/``: written in a scratch folder beside it and swapped in whole.

    ``with RunFolder(paper, profile) as rf: ...; rf.commit()``. While inside, the lock
    ``results/<paper>/.<profile>.lock`` is held: a second run of the same paper and profile gets
    :class:`RunLockedError` naming the first one's process id. The lock is an ``flock``, so a killed run
    releases it; scratch folders of killed runs are removed. On an exception nothing is left behind, not
    even an empty paper folder.
    """

    def __init__(self, paper: str, profile: str, root: Path | None = None) -> None:
        self.parent = (Path(root) if root is not None else results_root()) / paper
        self.profile = profile
        self.final = self.parent / profile
        self.tmp = self.parent / f".{profile}.tmp-{os.getpid()}"
        self.lock_path = self.parent / f".{profile}.lock"
        self._lock: int | None = None

    def __enter__(self) -> "RunFolder":
        self.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
        except BaseException:
            self._remove_empty_parent()
            raise
        self._clean_stale()
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()
        self._remove_empty_parent()

    def commit(self) -> None:
        """Swap the scratch folder in for the final one."""
        if self.final.exists():
            old = self.parent / f".{self.profile}.old-{os.getpid()}"
            self.final.replace(old)
            self.tmp.replace(self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.tmp.replace(self.final)

    # -- lock ---------------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        for _ in range(50):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(
                    f"results/{self.parent.name}/{self.profile} is being written by another run ({holder}); "
                    f"wait for it to finish or stop that process, then run again") from None
            try:  # the file we locked must still be the one at the path (a releasing run unlinks it)
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"process id {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
                self._lock = fd
                return
            os.close(fd)
        raise RunLockedError(f"could not take the lock {self.lock_path}")

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            os.close(self._lock)
            self._lock = None

    def _clean_stale(self) -> None:
        """Scratch folders of runs that were killed (their process is gone)."""
        for d in self.parent.glob(f".{self.profile}.*-*"):
            try:
                pid = int(d.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and not pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)

    def _remove_empty_parent(self) -> None:
        with contextlib.suppress(OSError):
            if not any(self.parent.iterdir()):
                self.parent.rmdir()
