"""A content-addressed, sharded, memory-mapped cache of step embeddings that never serves corrupt
data.

Layout::

    ROOT/<spec id>/spec.json                   what produced these vectors (backbone weights hash,
                                               dtype, layer, pooling, max length, cache format,
                                               ...) and where the backbone came from
    ROOT/<spec id>/shard-<stamp>.npy           float16 rows, (steps in shard, H)
    ROOT/<spec id>/shard-<stamp>.json          manifest: the shard's name, shape and SHA-256,
                                               key -> (row offset, number of steps), and a
                                               checksum of the manifest itself

An entry's key hashes its token ids and step ends, and the spec id hashes the spec (with the
cache format), so a change to either is a miss, never a stale hit. Each shard's data is written
(temporary name, then rename) before its manifest, and a shard without a manifest does not exist:
an interrupted write is never read, and a rerun resumes after the last complete shard.

Every read is checked: a manifest must parse, match its checksum and describe its own shard
(offsets inside it, the spec's width); a shard must match the manifest's SHA-256, shape and dtype
and hold only finite numbers, checked once per process before any of its rows is served. A
corrupt, truncated or swapped entry is reported once (a warning), its files are removed, and its
trajectories are computed again like any miss. NaN and infinite values are never stored
(``to_fp16``). Publishing takes an exclusive lock on the spec folder and re-reads the manifests
under it, so two writers never publish the same entry twice.

``verify_cache`` and ``collect_garbage`` (``prmkit cache verify|gc``) check and clean a whole
cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from prmkit._io import (atomic_open, file_lock as _locked, file_sha256, prmkit_cache_root,
                        write_json)
from prmkit.embed.tokens import StepTokens
from prmkit.errors import PrmkitError

log = logging.getLogger("prmkit")

FP16_MAX = float(np.finfo(np.float16).max)
# Version 2: manifests carry the shard's SHA-256 and shape and their own checksum.
CACHE_FORMAT = 2
_KEY = re.compile(r"[0-9a-f]{64}")
_MANIFEST_FIELDS = {"format", "shard", "rows", "dim", "sha256", "entries", "checksum"}


class CorruptEntry(PrmkitError):
    """A manifest or shard that fails its checks."""


def spec_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def entry_key(tokens: StepTokens) -> str:
    h = hashlib.sha256()
    h.update(np.asarray([tokens.question_len, len(tokens.ends)], dtype=np.int64).tobytes())
    h.update(np.asarray(tokens.ends, dtype=np.int64).tobytes())
    h.update(np.asarray(tokens.ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    return prmkit_cache_root() / "embeddings"


def to_fp16(array: np.ndarray) -> np.ndarray:
    """Cast to float16, refusing values float16 cannot hold (they would become inf)."""
    if not np.isfinite(array).all():
        raise PrmkitError("the backbone produced NaN or infinite values")
    peak = float(np.abs(array).max(initial=0.0))
    if peak > FP16_MAX:
        raise PrmkitError(f"step embeddings reach |h| = {peak:.4g}, beyond float16's {FP16_MAX}; "
                          "use another layer (middle layers of some LMs grow very large)")
    return array.astype(np.float16)


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    name: str  # the manifest's file name
    shard: str  # its shard's file name
    rows: int
    dim: int
    sha256: str
    entries: list[tuple[str, int, int]]


def read_manifest(path: Path, dim: int | None = None) -> Manifest:
    """Parse and check one manifest: format, checksum, its own shard's name, entries that tile
    the shard's rows exactly, ``dim`` where the spec gives it. Raises ``CorruptEntry``."""
    try:
        body = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CorruptEntry(f"unreadable manifest ({type(e).__name__})") from None
    if not isinstance(body, dict) or set(body) != _MANIFEST_FIELDS:
        raise CorruptEntry("manifest fields do not match the cache format")
    checksum = body.pop("checksum")
    if checksum != _checksum(body):
        raise CorruptEntry("manifest checksum mismatch")
    if body["format"] != CACHE_FORMAT:
        raise CorruptEntry(f"cache format {body['format']!r}, expected {CACHE_FORMAT}")
    if body["shard"] != path.with_suffix(".npy").name:
        raise CorruptEntry(f"manifest describes another shard ({body['shard']!r})")
    rows, width, entries = body["rows"], body["dim"], body["entries"]
    if not (_count(rows) and _count(width) and isinstance(body["sha256"], str)
            and isinstance(entries, list)):
        raise CorruptEntry("manifest has a malformed shape or hash")
    if dim is not None and width != dim:
        raise CorruptEntry(f"manifest width {width}, the spec's is {dim}")
    offset, out = 0, []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and _KEY.fullmatch(entry[0]) and entry[1] == offset and _count(entry[2])
                and entry[2] >= 1):
            raise CorruptEntry("manifest entries do not tile the shard")
        out.append((entry[0], entry[1], entry[2]))
        offset += entry[2]
    if offset != rows:
        raise CorruptEntry(f"manifest entries cover {offset} rows of {rows}")
    return Manifest(path.name, body["shard"], rows, width, body["sha256"], out)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_shard(directory: Path, manifest: Manifest) -> np.ndarray:
    """The shard's rows, memory-mapped, after checking its hash, shape, dtype and values.
    Raises ``CorruptEntry``."""
    path = directory / manifest.shard
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise CorruptEntry(f"shard unreadable ({e.strerror or type(e).__name__})") from None
    if digest != manifest.sha256:
        raise CorruptEntry("shard SHA-256 differs from its manifest")
    try:
        # a plain ndarray over the mapped file: np.memmap views carry extra per-object state,
        # which adds up over hundreds of thousands of entries
        array = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as e:
        raise CorruptEntry(f"shard unreadable ({e})") from None
    if array.dtype != np.float16 or array.shape != (manifest.rows, manifest.dim):
        raise CorruptEntry(f"shard holds {array.dtype} {array.shape}, the manifest says "
                           f"float16 {(manifest.rows, manifest.dim)}")
    if not np.isfinite(array).all():
        raise CorruptEntry("shard holds NaN or infinite values")
    return array


def _remove(directory: Path, *names: str) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def open_cache(backbone, cache_dir: str | os.PathLike | None | bool) -> "EmbeddingCache | None":
    """The cache of ``backbone``'s embeddings: ``cache_dir`` a folder, None for the default
    folder, or False for no cache."""
    if cache_dir is False:
        return None
    return EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint, backbone.source)


class EmbeddingCache:
    """Step embeddings keyed by content, for one embedding spec.

    ``source`` (the backbone as the user named it: a short name, an absolute path or a hub id)
    is recorded in ``spec.json`` for ``collect_garbage``; it is not part of the spec id.
    """

    def __init__(self, root: str | os.PathLike, spec: dict, source: str | None = None):
        self.spec = {**spec, "cache_format": CACHE_FORMAT}
        self.dir = Path(root) / spec_id(self.spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "spec.json").exists():
            with _locked(self.dir):
                write_json(self.dir / "spec.json", {"spec": self.spec, "source": source})
        self._dim = spec.get("hidden_size")
        self._index: dict[str, tuple[str, int, int]] = {}  # key -> (manifest, offset, length)
        self._manifests: dict[str, Manifest] = {}
        self._arrays: dict[str, np.ndarray] = {}  # manifest name -> checked rows
        self._seen: set[str] = set()
        self.dropped: list[str] = []  # "<file>: <reason>" for each corrupt entry removed
        self.refresh()

    def refresh(self) -> None:
        """Pick up shards completed since the last look (by this or another process)."""
        for path in sorted(self.dir.glob("shard-*.json")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                manifest = read_manifest(path, self._dim)
            except CorruptEntry as e:
                self._drop(path.name, str(e))
                continue
            self._manifests[path.name] = manifest
            for key, offset, length in manifest.entries:
                self._index.setdefault(key, (path.name, offset, length))

    def _drop(self, name: str, reason: str) -> None:
        """Report a corrupt entry once, forget it and remove its files: its trajectories become
        misses and are computed again."""
        stem = name[:-len(".json")]
        self.dropped.append(f"{self.dir / name}: {reason}")
        log.warning("embedding cache: %s: %s; removed, its trajectories will be computed again",
                    self.dir / name, reason)
        with _locked(self.dir):
            _remove(self.dir, name, stem + ".npy")
        self._manifests.pop(name, None)
        self._arrays.pop(name, None)
        self._index = {k: v for k, v in self._index.items() if v[0] != name}
        # another manifest may hold a key this one held first
        for other in self._manifests.values():
            for key, offset, length in other.entries:
                self._index.setdefault(key, (other.name, offset, length))

    def _rows(self, name: str) -> np.ndarray | None:
        """The checked rows of one shard, or None when it is corrupt (and now dropped)."""
        if name not in self._arrays:
            try:
                self._arrays[name] = load_shard(self.dir, self._manifests[name])
            except CorruptEntry as e:
                self._drop(name, str(e))
                return None
        return self._arrays[name]

    def available(self, keys: Iterable[str]) -> set[str]:
        """The keys whose entries are present and pass every check (each shard involved is
        checked now, once): what may be read without computing."""
        keys = [k for k in keys if k in self._index]
        for name in sorted({self._index[k][0] for k in keys}):
            self._rows(name)
        return {k for k in keys if k in self._index and self._index[k][0] in self._arrays}

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> np.ndarray:
        """Shape: (num_steps, H), float16, memory-mapped (read-only)."""
        name, offset, length = self._index[key]
        rows = self._rows(name)
        if rows is None:
            raise PrmkitError(f"embedding cache entry in {self.dir} was corrupt and has been "
                              "removed; run the command again to recompute it")
        return rows[offset:offset + length]

    def put(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Write one shard holding ``items`` ((key, (num_steps, H) array) pairs) not yet
        present, and publish it."""
        for key, _ in items:
            if not _KEY.fullmatch(key):
                raise ValueError(f"cache keys are SHA-256 hex digests (entry_key), got {key!r}")
        items = [(k, to_fp16(a)) for k, a in items if k not in self._index]
        if not items:
            return
        with _locked(self.dir):
            self.refresh()  # another writer may have published some of these meanwhile
            items = [(k, a) for k, a in items if k not in self._index]
            if not items:
                return
            rows = np.concatenate([a for _, a in items])
            entries, offset = [], 0
            for key, array in items:
                entries.append([key, offset, len(array)])
                offset += len(array)
            stem = f"shard-{time.time_ns():020d}-{os.getpid()}"
            with atomic_open(self.dir / f"{stem}.npy", "wb") as f:
                np.save(f, rows)
            body = {"format": CACHE_FORMAT, "shard": f"{stem}.npy", "rows": int(rows.shape[0]),
                    "dim": int(rows.shape[1]), "sha256": file_sha256(self.dir / f"{stem}.npy"),
                    "entries": entries}
            # The manifest goes last: it is what makes the shard exist.
            write_json(self.dir / f"{stem}.json", {**body, "checksum": _checksum(body)})
            self.refresh()
        self._arrays[f"{stem}.json"] = np.asarray(np.load(self.dir / f"{stem}.npy",
                                                          mmap_mode="r"))


# --- checking and cleaning a whole cache folder -------------------------------------------------

def _spec_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _read_spec(directory: Path) -> dict | None:
    """spec.json's content when it belongs to this folder and this cache format, else None."""
    try:
        info = json.loads((directory / "spec.json").read_text(encoding="utf-8"))
        spec = info["spec"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if (not isinstance(spec, dict) or spec.get("cache_format") != CACHE_FORMAT
            or spec_id(spec) != directory.name):
        return None
    return info


def verify_cache(root: str | os.PathLike) -> dict:
    """Check every entry of every spec folder under ``root``; change nothing.

    Returns counts (folders, shards, entries, steps) and lists: ``corrupt`` (manifests or shards
    that fail a check, with the reason), ``orphans`` (files no manifest accounts for) and
    ``stale`` (folders of another cache format or without a readable spec).
    """
    root = Path(root)
    report = {"root": str(root), "folders": 0, "shards": 0, "entries": 0, "steps": 0,
              "corrupt": [], "orphans": [], "stale": []}
    for directory in _spec_dirs(root):
        info = _read_spec(directory)
        if info is None:
            report["stale"].append(str(directory))
            continue
        report["folders"] += 1
        dim = info["spec"].get("hidden_size")
        accounted = {"spec.json"}
        for path in sorted(directory.glob("shard-*.json")):
            accounted.add(path.name)
            try:
                manifest = read_manifest(path, dim)
                load_shard(directory, manifest)
            except CorruptEntry as e:
                report["corrupt"].append(f"{path}: {e}")
                accounted.add(path.with_suffix(".npy").name)
                continue
            accounted.add(manifest.shard)
            report["shards"] += 1
            report["entries"] += len(manifest.entries)
            report["steps"] += manifest.rows
        report["orphans"] += [str(p) for p in sorted(directory.iterdir())
                              if p.name not in accounted]
    return report


def _backbone_gone(source) -> bool:
    """Whether the backbone a spec folder was made with is no longer on this machine: a local
    path that no longer exists, or a short name whose package is gone. Hub ids are kept."""
    from prmkit.embed.sources import BACKBONES

    if not isinstance(source, str):
        return False
    if source in BACKBONES:
        try:
            BACKBONES[source]()
        except PrmkitError:
            return True
        return False
    return os.path.isabs(source) and not os.path.exists(source)


def collect_garbage(root: str | os.PathLike) -> dict:
    """Remove what can never be read: corrupt entries, orphan files (interrupted writes), folders
    of other cache formats, and folders whose backbone is no longer on this machine. Each spec
    folder is cleaned under its lock, so a live writer's temporary files are left alone."""
    root = Path(root)
    report = {"root": str(root), "removed_files": 0, "removed_folders": 0, "freed_bytes": 0,
              "kept_entries": 0}

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() \
            else p.stat().st_size

    for directory in _spec_dirs(root):
        info = _read_spec(directory)
        if info is None or _backbone_gone(info.get("source")):
            report["freed_bytes"] += size(directory)
            shutil.rmtree(directory)
            report["removed_folders"] += 1
            continue
        with _locked(directory):
            keep = {"spec.json"}
            for path in sorted(directory.glob("shard-*.json")):
                try:
                    manifest = read_manifest(path, info["spec"].get("hidden_size"))
                    load_shard(directory, manifest)
                except CorruptEntry:
                    continue
                keep |= {path.name, manifest.shard}
                report["kept_entries"] += len(manifest.entries)
            for path in sorted(directory.iterdir()):
                if path.name not in keep and path.is_file():
                    report["freed_bytes"] += path.stat().st_size
                    path.unlink()
                    report["removed_files"] += 1
    return report
