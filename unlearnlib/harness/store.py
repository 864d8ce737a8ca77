"""Everything a run keeps on disk: the cell store (checkpoints, cell records, logits, each under its key with a
sha256) and the run folder ``results/<paper>/<profile>/`` (written atomically, under a lock).

Layout under the cache root (``$UNLEARNLIB_CACHE``)::

    checkpoints/<key>.pt     state dict (torch.save), loaded with weights_only=True and strict keys
    checkpoints/<key>.json   its metadata: sha256 of the .pt, seconds, device, threads
    cells/<key>.json         a finished cell's record (rows, timings, traces) and the sha256 of its logits
    logits/<key>.npz         the logits of the model the cell evaluated (float32)

Every JSON file is ``{"format": 1, "sha256": <of the body>, "body": {...}}``. A file that is missing a part,
truncated, corrupted or unreadable is reported in one line, moved aside (``*.corrupt``) and rebuilt; it is
never loaded. Writes go to a temporary file that is renamed into place (file and folder fsynced), so a killed
process leaves either the old file, the new one, or a temporary file that no reader looks at; a failed write
removes its temporary file, and temporary files older than a day are removed when a store is opened.
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
import socket
import tempfile
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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (where the file system supports it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all: a uniquely named temporary file beside it, fsynced, renamed into
    place, the folder fsynced; on any failure the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # as open() would have made it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


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


def _move_aside(p: Path) -> str | None:
    """Move ``p`` to the first free ``<name>.corrupt[N]``; its new name, or None when it is gone already."""
    for n in range(1, 10_000):
        dest = p.with_name(p.name + ".corrupt" + (str(n) if n > 1 else ""))
        try:
            if p.is_dir() and not p.is_symlink():
                if os.path.lexists(dest):
                    continue
                p.rename(dest)
            else:  # a hard link claims the name atomically: two movers never share one destination
                os.link(p, dest, follow_symlinks=False)
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        except FileExistsError:
            continue
        except FileNotFoundError:  # another process moved it first
            return None
        except OSError:  # no hard links on this file system: a rename then
            if os.path.lexists(dest):
                continue
            try:
                p.replace(dest)
            except FileNotFoundError:
                return None
        return dest.name
    return None


class Store:
    """Checkpoints, cell records and logits under their keys (see the module docstring)."""

    STALE_TMP_S = 24 * 3600  # a temporary file this old belongs to no running write

    def __init__(self, root: Path | None = None, say: Callable[[str], None] = print) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.say = say
        self._remove_stale_tmp()

    def _remove_stale_tmp(self) -> None:
        """Temporary files of writes that died (killed, disk full) more than a day ago."""
        now = time.time()
        for sub in ("checkpoints", "cells", "logits"):
            d = self.root / sub
            if not d.is_dir():
                continue
            for p in d.glob(".*.tmp*"):
                with contextlib.suppress(OSError):
                    if p.is_file() and not p.is_symlink() and now - p.lstat().st_mtime > self.STALE_TMP_S:
                        p.unlink()

    # -- paths --------------------------------------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{key}.pt"

    def record_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.json"

    def logits_path(self, key: str) -> Path:
        return self.root / "logits" / f"{key}.npz"

    # -- integrity ----------------------------------------------------------------------------------------
    def set_aside(self, err: CorruptFile, *paths: Path) -> None:
        """Report a failed check in one line and move the files out of the way (``<name>.corrupt``, or
        ``.corrupt2``... when that is taken). Another process setting the same file aside at the same time is
        fine: each destination is taken by one mover only, and a file already moved is skipped."""
        moved = [name for name in map(_move_aside, paths) if name]
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
            if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items()):
                raise CorruptFile(f"{pt}: not a state dict of tensors (a {type(state).__name__})")
            try:
                model.load_state_dict(state, strict=True)  # pitfall 5: never strict=False
            except (RuntimeError, TypeError, KeyError, AttributeError, ValueError) as e:
                first = next(iter(str(e).splitlines()), "")
                raise CorruptFile(f"{pt}: does not fit the model ({type(e).__name__}: {first[:100]})") from None
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


def _fsync_tree(root: Path) -> None:
    """fsync every file below ``root``, then every folder (deepest first)."""
    folders = [root]
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            continue
        if p.is_dir():
            folders.append(p)
        elif p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in reversed(folders):
        fsync_dir(d)


class RunFolder:
    """``results/<paper>/<profile>/``: written in a scratch folder beside it and swapped in whole.

    ``with RunFolder(paper, profile) as rf: ...; rf.commit()``. While inside, the lock
    ``results/<paper>/.<profile>.lock`` is held: a second run of the same paper and profile gets
    :class:`RunLockedError` naming the first one's host and process id. The lock is an ``flock``, so a killed
    run releases it; scratch folders of killed runs are removed, except that a run killed in the middle of its
    swap (no final folder left) gets its complete new folder (marked ``COMPLETE``) or the old one put back.
    On an exception nothing is left behind, not even an empty paper folder.
    """

    MARKER = "COMPLETE"  # written last into a scratch folder that is ready to be swapped in

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
        self._restore_interrupted_swap()
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
        """Swap the scratch folder in for the final one: its files made durable first, then marked complete, then
        the two renames, then the parent folder made durable."""
        _fsync_tree(self.tmp)
        atomic_write(self.tmp / self.MARKER, b"")
        if self.final.exists():
            old = self.parent / f".{self.profile}.old-{os.getpid()}"
            self.final.replace(old)
            self.tmp.replace(self.final)
            fsync_dir(self.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.tmp.replace(self.final)
        (self.final / self.MARKER).unlink(missing_ok=True)
        fsync_dir(self.final)
        fsync_dir(self.parent)

    def _restore_interrupted_swap(self) -> None:
        """No final folder, but a dead run's complete scratch folder or its set-aside old one: put it back (the
        newer first)."""
        if self.final.exists():
            return
        dead = [d for d in self._stale() if d.is_dir() and not d.is_symlink()]
        ready = [d for d in dead if ".tmp-" in d.name and (d / self.MARKER).is_file()]
        old = [d for d in dead if ".old-" in d.name]
        for d in ready + old:
            d.replace(self.final)
            (self.final / self.MARKER).unlink(missing_ok=True)
            fsync_dir(self.parent)
            return

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
                os.write(fd, f"process {socket.gethostname()}:{os.getpid()}, started "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
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

    def _stale(self) -> list[Path]:
        """Scratch and old folders of runs whose process is gone (newest first)."""
        out = []
        for d in self.parent.glob(f".{self.profile}.*-*"):
            try:
                pid = int(d.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and not pid_alive(pid):
                out.append(d)
        return sorted(out, key=lambda d: d.lstat().st_mtime, reverse=True)

    def _clean_stale(self) -> None:
        """Scratch folders of runs that were killed (their process is gone)."""
        for d in self._stale():
            shutil.rmtree(d, ignore_errors=True)

    def _remove_empty_parent(self) -> None:
        with contextlib.suppress(OSError):
            if not any(self.parent.iterdir()):
                self.parent.rmdir()
