"""The embedding cache never serves corrupt data: every kind of damage is detected, reported once,
removed and recomputed; ``verify_cache`` and ``collect_garbage`` check and clean a folder."""

import hashlib
import json
import os

import numpy as np
import pytest

from prmkit.embed import EmbeddingCache, embed_trajectories, open_cache
from prmkit.embed.cache import collect_garbage, verify_cache, _checksum
from prmkit.errors import PrmkitError
from prmkit.records import Trajectory

SPEC = {"x": 1, "hidden_size": 4}


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def two_shards(root) -> EmbeddingCache:
    cache = EmbeddingCache(root, SPEC)
    cache.put([(key(0), np.full((2, 4), 1.0)), (key(1), np.full((1, 4), 2.0))])
    cache.put([(key(2), np.full((3, 4), 3.0))])
    return cache


def manifests(cache):
    return sorted(cache.dir.glob("shard-*.json"))


def rewrite_manifest(path, change):
    """Edit a manifest and give it a valid checksum: damage only the deeper checks can see."""
    body = json.loads(path.read_text())
    body.pop("checksum")
    change(body)
    path.write_text(json.dumps({**body, "checksum": _checksum(body)}))


def flip(path, offset, mask=0xFF):
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def swap(a, b):
    tmp = a.with_name("swap.tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def nan_in_shard(m):
    shard = m.with_suffix(".npy")
    rows = np.load(shard)
    rows[0, 0] = np.nan
    np.save(shard, rows)
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    rewrite_manifest(m, lambda body: body.update(sha256=digest))


DAMAGE = {
    "flipped byte in shard data": lambda m: flip(m.with_suffix(".npy"), -1),
    "one flipped bit in shard data": lambda m: flip(m.with_suffix(".npy"), -7, 0x01),
    "flipped byte in shard header": lambda m: flip(m.with_suffix(".npy"), 20),
    "truncated shard": lambda m: m.with_suffix(".npy").write_bytes(
        m.with_suffix(".npy").read_bytes()[:100]),
    "empty shard": lambda m: m.with_suffix(".npy").write_bytes(b""),
    "deleted shard": lambda m: m.with_suffix(".npy").unlink(),
    "flipped byte in manifest": lambda m: flip(m, 30),
    "truncated manifest": lambda m: m.write_bytes(m.read_bytes()[:40]),
    "manifest not JSON": lambda m: m.write_text("]]"),
    "manifest nested too deep": lambda m: m.write_text("[" * 100_000 + "]" * 100_000),
    "bad offset, old checksum": lambda m: m.write_text(json.dumps(
        {**json.loads(m.read_text()), "entries": [[key(0), 1, 2], [key(1), 2, 1]]})),
    "bad offset, valid checksum": lambda m: rewrite_manifest(
        m, lambda body: body["entries"][0].__setitem__(1, 1)),
    "bad length, valid checksum": lambda m: rewrite_manifest(
        m, lambda body: body["entries"][0].__setitem__(2, 5)),
    "manifest of another shard": lambda m: rewrite_manifest(
        m, lambda body: body.update(shard="shard-1.npy")),
    "other width, valid checksum": lambda m: rewrite_manifest(
        m, lambda body: body.update(dim=8)),
    "NaN, valid hashes": nan_in_shard,
    "shards swapped": lambda m: swap(m.with_suffix(".npy"),
                                     sorted(m.parent.glob("shard-*.npy"))[1]),
    "manifests swapped": lambda m: swap(m, sorted(m.parent.glob("shard-*.json"))[1]),
    "pickled object shard": lambda m: np.save(m.with_suffix(".npy"),
                                              np.array([{"a": 1}], dtype=object)),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_detected_reported_once_and_removed(tmp_path, damage, caplog):
    clean = two_shards(tmp_path)
    first = manifests(clean)[0]
    DAMAGE[damage](first)
    cache = EmbeddingCache(tmp_path, SPEC)  # a new process opening the damaged cache
    keys = [key(i) for i in range(3)]
    good = cache.available(keys)
    # nothing damaged is offered; whatever is offered is exactly what was written
    assert good < set(keys) and cache.dropped
    for i, value in ((0, 1.0), (1, 2.0), (2, 3.0)):
        if key(i) in good:
            np.testing.assert_array_equal(cache.get(key(i)), np.full_like(cache.get(key(i)),
                                                                          value))
    assert len(caplog.records) == len(cache.dropped)
    # the damaged files are gone: the next process sees a clean miss and no warning
    caplog.clear()
    again = EmbeddingCache(tmp_path, SPEC)
    assert again.available(keys) == good and not again.dropped and not caplog.records
    assert verify_cache(tmp_path)["corrupt"] == []


def test_a_corrupt_entry_is_recomputed_to_the_same_vectors(tmp_path, minilm):
    data = [Trajectory("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."]),
            Trajectory("What is 4 * 4?", ["4 * 4 = 16.", "The answer is 16."])]
    first, _ = embed_trajectories(data, minilm, EmbeddingCache(tmp_path, minilm.fingerprint),
                                  progress=False)
    first = [np.array(a) for a in first]  # copies: the arrays map the shard about to be damaged
    cache = EmbeddingCache(tmp_path, minilm.fingerprint)
    flip(cache.dir / manifests(cache)[0].with_suffix(".npy").name, -3, 0x10)
    again, report = embed_trajectories(data, minilm, EmbeddingCache(tmp_path, minilm.fingerprint),
                                       progress=False)
    assert report["computed"] == 2 and report["forward_batches"] >= 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_open_cache_is_the_backbones_spec_in_the_folder_asked_for(tmp_path, minilm,
                                                                     monkeypatch):
    assert open_cache(minilm, False) is None
    cache = open_cache(minilm, tmp_path / "here")
    assert cache.dir.parent == tmp_path / "here"
    assert cache.dir == EmbeddingCache(tmp_path / "here", minilm.fingerprint).dir
    assert json.loads((cache.dir / "spec.json").read_text())["source"] == minilm.source
    monkeypatch.setenv("PRMKIT_CACHE", str(tmp_path / "default"))
    assert open_cache(minilm, None).dir.parent.parent == tmp_path / "default"


def test_get_of_a_shard_damaged_after_opening_refuses(tmp_path):
    cache = two_shards(tmp_path)
    reader = EmbeddingCache(tmp_path, SPEC)
    flip(manifests(cache)[1].with_suffix(".npy"), -1)
    with pytest.raises(PrmkitError, match="corrupt"):
        reader.get(key(2))


def test_shard_without_manifest_does_not_exist_and_gc_removes_it(tmp_path):
    cache = EmbeddingCache(tmp_path, SPEC)
    cache.put([(key(1), np.ones((2, 4), np.float32))])
    # a writer killed after the data and before the manifest, and one killed mid-write
    np.save(cache.dir / "shard-99999999999999999999-1.npy", np.zeros((3, 4), np.float16))
    (cache.dir / ".shard-99999999999999999999-2.npy.abc.tmp").write_bytes(b"\0" * 10)
    reopened = EmbeddingCache(tmp_path, SPEC)
    assert len(reopened) == 1 and key(1) in reopened
    np.testing.assert_array_equal(reopened.get(key(1)), np.ones((2, 4), np.float16))
    report = verify_cache(tmp_path)
    assert (report["shards"], report["entries"], report["steps"]) == (1, 1, 2)
    assert len(report["orphans"]) == 2 and not report["corrupt"]
    gc = collect_garbage(tmp_path)
    assert gc["removed_files"] == 2 and gc["kept_entries"] == 1
    assert verify_cache(tmp_path)["orphans"] == []
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, SPEC).get(key(1)),
                                  np.ones((2, 4), np.float16))


def test_verify_reports_damage_without_changing_anything_and_gc_removes_it(tmp_path):
    cache = two_shards(tmp_path)
    flip(manifests(cache)[0].with_suffix(".npy"), -1)
    before = sorted(os.listdir(cache.dir))
    report = verify_cache(tmp_path)
    assert len(report["corrupt"]) == 1 and "SHA-256" in report["corrupt"][0]
    assert (report["shards"], report["entries"]) == (1, 1)
    assert sorted(os.listdir(cache.dir)) == before
    gc = collect_garbage(tmp_path)
    assert (gc["removed_files"], gc["kept_entries"]) == (2, 1)
    assert verify_cache(tmp_path)["corrupt"] == []


def test_gc_removes_other_formats_and_vanished_backbones(tmp_path):
    old = tmp_path / "0123456789abcdef0123"  # a version-1 folder: spec.json without a format
    old.mkdir()
    (old / "spec.json").write_text(json.dumps({"x": 1}))
    gone = EmbeddingCache(tmp_path, {**SPEC, "y": 2}, source=str(tmp_path / "deleted-model"))
    gone.put([(key(5), np.ones((1, 4)))])
    kept = EmbeddingCache(tmp_path, SPEC, source="some-org/some-model")  # a hub id: kept
    kept.put([(key(6), np.ones((1, 4)))])
    assert verify_cache(tmp_path)["stale"] == [str(old)]
    gc = collect_garbage(tmp_path)
    assert gc["removed_folders"] == 2 and gc["kept_entries"] == 1
    assert sorted(os.listdir(tmp_path)) == [kept.dir.name]


def test_two_writers_never_publish_the_same_entry_twice(tmp_path):
    a, b = EmbeddingCache(tmp_path, SPEC), EmbeddingCache(tmp_path, SPEC)
    a.put([(key(0), np.ones((1, 4)))])
    b.put([(key(0), np.ones((1, 4))), (key(1), np.ones((2, 4)))])  # b had not seen a's shard
    entries = [e[0] for m in manifests(a) for e in json.loads(m.read_text())["entries"]]
    assert sorted(entries) == sorted([key(0), key(1)])


def test_fp16_overflow_and_nan_are_refused(tmp_path):
    cache = EmbeddingCache(tmp_path, SPEC)
    with pytest.raises(PrmkitError, match="beyond float16"):
        cache.put([(key(0), np.array([[70000.0, 1.0, 0, 0]]))])
    with pytest.raises(PrmkitError, match="NaN"):
        cache.put([(key(0), np.array([[np.nan, 1.0, 0, 0]]))])
    assert len(EmbeddingCache(tmp_path, SPEC)) == 0


def test_cache_format_is_part_of_the_spec_id(tmp_path):
    from prmkit.embed.cache import CACHE_FORMAT, spec_id

    cache = EmbeddingCache(tmp_path, SPEC)
    assert cache.dir.name == spec_id({**SPEC, "cache_format": CACHE_FORMAT}) != spec_id(SPEC)
