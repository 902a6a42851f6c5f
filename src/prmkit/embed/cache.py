"""A content-addressed, sharded, memory-mapped cache of step embeddings.

Layout::

    ROOT/<spec id>/spec.json                   what produced these vectors (backbone weights hash,
                                               dtype, layer, pooling, max length, ...)
    ROOT/<spec id>/shard-<stamp>.npy           float16 rows, (steps in shard, H)
    ROOT/<spec id>/shard-<stamp>.json          manifest: key -> (row offset, number of steps)

An entry's key hashes its token ids and step ends, and the spec id hashes the spec, so a change
to either is a miss, never a stale hit. Each shard's data is written (temporary name, then rename)
before its manifest, and a shard without a manifest does not exist: an interrupted write is never
read, and a rerun resumes after the last complete shard. Rows are memory-mapped, so reading a
large cache costs address space, not memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from prmkit._io import atomic_open, write_json
from prmkit.embed.tokens import StepTokens
from prmkit.errors import PrmkitError

FP16_MAX = float(np.finfo(np.float16).max)


def spec_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def entry_key(tokens: StepTokens) -> str:
    h = hashlib.sha256()
    h.update(np.asarray([tokens.question_len, len(tokens.ends)], dtype=np.int64).tobytes())
    h.update(np.asarray(tokens.ends, dtype=np.int64).tobytes())
    h.update(np.asarray(tokens.ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def prmkit_cache_root() -> Path:
    """``$PRMKIT_CACHE``, else ``~/.cache/prmkit``: embeddings and converted backbones live here."""
    return Path(os.environ.get("PRMKIT_CACHE", Path.home() / ".cache" / "prmkit"))


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


class EmbeddingCache:
    """Step embeddings keyed by content, for one embedding spec."""

    def __init__(self, root: str | os.PathLike, spec: dict):
        self.dir = Path(root) / spec_id(spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "spec.json").exists():
            write_json(self.dir / "spec.json", spec)
        self._index: dict[str, tuple[str, int, int]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Pick up shards completed since the last look (by this or another process)."""
        for manifest in sorted(self.dir.glob("shard-*.json")):
            if manifest.name in self._seen:
                continue
            entries = json.loads(manifest.read_text())["entries"]
            shard = manifest.with_suffix(".npy").name
            for key, offset, length in entries:
                self._index[key] = (shard, offset, length)
            self._seen.add(manifest.name)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> np.ndarray:
        """Shape: (num_steps, H), float16, memory-mapped (read-only)."""
        shard, offset, length = self._index[key]
        if shard not in self._arrays:
            # a plain ndarray over the mapped file: np.memmap views carry extra per-object state,
            # which adds up over hundreds of thousands of entries
            self._arrays[shard] = np.asarray(np.load(self.dir / shard, mmap_mode="r"))
        return self._arrays[shard][offset:offset + length]

    def put(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Write one shard holding ``items`` ((key, (num_steps, H) array) pairs)."""
        items = [(k, a) for k, a in items if k not in self._index]
        if not items:
            return
        rows = np.concatenate([to_fp16(a) for _, a in items])
        entries, offset = [], 0
        for key, array in items:
            entries.append([key, offset, len(array)])
            offset += len(array)
        stem = f"shard-{time.time_ns():020d}-{os.getpid()}"
        with atomic_open(self.dir / f"{stem}.npy", "wb") as f:
            np.save(f, rows)
        # The manifest goes last: it is what makes the shard exist.
        write_json(self.dir / f"{stem}.json", {"entries": entries})
        self.refresh()
