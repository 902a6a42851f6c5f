"""Atomic file writes: write to a temporary name beside the target, fsync, then rename.

A reader never sees a half-written file, and a crash leaves the old file (or none) in place.
Files get the permissions the umask gives a new file (0644 under umask 022), as ``open`` would,
not the 0600 of a temporary file: a model or cache written by one user can be read by another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


def umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary filename beside ``path``; on clean exit it is fsynced and renamed over
    ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # after the write: a library writer may have replaced the file with a 0600 one of its own
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on clean exit it replaces ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f


def atomic_save(path: str | os.PathLike, save_fn) -> None:
    """Call ``save_fn(tmp_path)`` (a library writer that wants a filename), then rename."""
    with atomic_path(path) as tmp:
        save_fn(tmp)


def prmkit_cache_root() -> Path:
    """``$PRMKIT_CACHE``, else ``~/.cache/prmkit``: embeddings and converted backbones live here."""
    return Path(os.environ.get("PRMKIT_CACHE", Path.home() / ".cache" / "prmkit"))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(obj):
    """Plain JSON values: numpy numbers become Python ones, and NaN or infinite figures (an
    AUROC with one class present, say) become null, since JSON has no NaN."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_open(path) as f:
        json.dump(jsonable(obj), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def open_input(path: str | os.PathLike) -> IO[bytes]:
    """Open an input file for reading in binary, refusing what is not a regular file: reading a
    FIFO, a device or a socket could block forever or never end. Errors are ``DataError``."""
    from prmkit.errors import DataError

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO, device or socket"
            raise DataError(f"not a regular file ({kind})", path=str(path))
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path=str(path)) from None


_HELD: set[str] = set()  # folders this process holds locked (re-entrant within a process)


@contextlib.contextmanager
def file_lock(folder: str | os.PathLike, wait: bool = True,
              busy: str = "another prmkit process is writing there") -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on the folder itself, against other processes; no
    lock file is left behind. With ``wait=False`` a held lock is an immediate ``PrmkitError``
    (``busy`` says why)."""
    from prmkit.errors import PrmkitError

    key = os.path.realpath(folder)
    if fcntl is None or key in _HELD:
        yield
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise PrmkitError(f"{folder} is locked: {busy}") from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Remove temporary files (``.NAME.*.tmp``) left by a process killed mid-write; call it
    holding the folder's lock, so no live writer's file is taken. Returns how many."""
    count = 0
    for path in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            count += 1
    return count


OVERWRITE_HINT = "pass overwrite=True (--overwrite on the command line)"


def input_paths(data, *more: str | os.PathLike) -> list[str | os.PathLike]:
    """The input files of a job, which no output may replace: ``data`` (unless it is a list of
    records) and every file in the ``more`` folders (or the ``more`` files themselves)."""
    paths = [] if isinstance(data, list) else [data]
    for folder in more:
        paths += list(Path(folder).iterdir()) if Path(folder).is_dir() else [folder]
    return paths


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False, folder: bool = False) -> Path:
    """Check an output path before any work starts: not one of ``inputs``, not a folder where a
    file is written (or a file where a folder is), its folder writable, and not already there
    unless ``overwrite`` (a folder output may exist: the caller decides what it may hold).
    Errors are ``PrmkitError`` naming the path."""
    from prmkit.errors import PrmkitError

    path = Path(path).expanduser()
    for source in inputs:
        if os.path.exists(source) and path.exists() and os.path.samefile(source, path):
            raise PrmkitError(f"{path} is also an input: refusing to write over it")
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            raise PrmkitError(f"{path} exists and is not a folder")
        if not folder and path.is_dir():
            raise PrmkitError(f"{path} is a folder; give a file name")
        if not folder and not overwrite:
            raise PrmkitError(f"{path} exists; {OVERWRITE_HINT} to replace it")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():  # the nearest folder that exists must let us create the rest
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PrmkitError(f"cannot write {path}: {parent} is not a writable folder")
    return path
