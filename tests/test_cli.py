import json
import subprocess
import sys

import pytest

from prmkit.cli import main

MINILM = ["--backbone", "minilm"]
SMALL_HEAD = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--no-progress"]


def test_train_then_score_and_second_run_uses_the_cache(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m1"), "--epochs", "3",
                 "--cache", cache, *MINILM, *SMALL_HEAD]) == 0
    first = capsys.readouterr().out
    assert "24 computed" in first and "saved to" in first
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m2"), "--epochs", "3",
                 "--cache", cache, *MINILM, *SMALL_HEAD]) == 0
    assert "all 24 trajectories from the cache (no forward pass)" in capsys.readouterr().out

    assert main(["score", str(tmp_path / "m1"), str(small_jsonl), "--cache", cache,
                 "--no-progress", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 24 and len(rows[0]["step_probs"]) == 3
    assert set(rows[0]["scores"]) >= {"product", "min", "mean", "sum", "last"}
    p = rows[0]["step_probs"]
    assert rows[0]["scores"]["min"] == pytest.approx(min(p))
    assert rows[0]["scores"]["product"] == pytest.approx(p[0] * p[1] * p[2])


def test_score_writes_jsonl(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1", "--cache",
          cache, *MINILM, *SMALL_HEAD])
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--out", str(out),
                 "--cache", cache, "--no-progress"]) == 0
    assert len(out.read_text().splitlines()) == 24


def test_every_file_written_honours_the_umask(tmp_path, small_jsonl):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1",
                     "--cache", str(tmp_path / "cache"), "--keep-checkpoint", *MINILM,
                     *SMALL_HEAD]) == 0
        assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--out",
                     str(tmp_path / "s.jsonl"), "--cache", str(tmp_path / "cache"),
                     "--no-progress"]) == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != small_jsonl]
    assert len(files) >= 7  # model, config, summary, checkpoint, scores, cache spec and shard
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == \
        {p.name: 0o644 for p in files}


def test_malformed_data_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "steps": ["a"], "labels": [1]}\n'
                   '{"question": "q", "steps": ["a", "b"], "labels": [1, NaN]}\n')
    proc = subprocess.run([sys.executable, "-m", "prmkit.cli", "train", str(bad), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}:2: labels[1]: number NaN is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_option_value_exits_2(tmp_path, small_jsonl, capsys):
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--val-fraction",
                 "1.5"]) == 2
    assert "val_fraction must be in [0, 1)" in capsys.readouterr().err


def test_scoring_with_a_model_folder_that_is_not_one(tmp_path, small_jsonl, capsys):
    assert main(["score", str(tmp_path), str(small_jsonl)]) == 2
    assert "is not a model prmkit can score with (no config.json)" in capsys.readouterr().err


def test_data_synthetic_then_stats_reports_pools(tmp_path, capsys):
    out = tmp_path / "pools.jsonl"
    assert main(["data", "synthetic", "--out", str(out), "--problems", "20", "--pool", "8"]) == 0
    assert "wrote 160 trajectories" in capsys.readouterr().out
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 160 and stats["pools"]["count"] == 20
    assert 0.0 < stats["pools"]["accuracy"] < 1.0 and stats["pools"]["k"] == 8.0


def test_data_overlap_and_convert(tmp_path, small_jsonl, capsys):
    other = tmp_path / "other.jsonl"
    lines = small_jsonl.read_text().splitlines()
    other.write_text(lines[0] + "\n" + '{"question": "Something else?", "steps": ["a"]}\n')
    assert main(["data", "overlap", str(other), str(small_jsonl), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overlap"] == 1
    trl = tmp_path / "trl.jsonl"
    assert main(["data", "convert", str(small_jsonl), str(trl), "--from", "jsonl", "--to",
                 "trl", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["read"] == 24 and len(trl.read_text().splitlines()) == 24


def test_data_convert_to_a_read_only_format_exits_2(tmp_path, small_jsonl, capsys):
    assert main(["data", "convert", str(small_jsonl), str(tmp_path / "x"), "--from", "jsonl",
                 "--to", "prm800k"]) == 2
    assert "read-only" in capsys.readouterr().err


def test_killed_embed_resumes_and_matches_an_uninterrupted_run(tmp_path):
    import os
    import signal
    import time

    import numpy as np

    from conftest import make_rows
    from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, embed_trajectories
    from prmkit.records import Trajectory

    data = tmp_path / "data.jsonl"
    rows = make_rows(30)  # 90 trajectories, 9 shards of 10
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "prmkit.cli", "embed", str(data), "--cache", str(cache),
           "--shard-size", "10", "--no-progress", "--json", "--backbone", "minilm"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(cache.glob("*/shard-*.json")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = sum(len(json.loads(m.read_text())["entries"]) for m in cache.glob("*/shard-*.json"))
    assert 10 <= done < 90  # killed part way, after at least one complete shard

    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert (report["cached"], report["computed"]) == (done, 90 - done)  # nothing redone

    backbone = Backbone(EmbedConfig(backbone="minilm"))
    trajectories = [Trajectory.from_dict(r) for r in rows]
    fresh = EmbeddingCache(tmp_path / "fresh", backbone.fingerprint)
    reference, _ = embed_trajectories(trajectories, backbone, fresh, progress=False,
                                      shard_trajectories=10)
    resumed_cache = EmbeddingCache(cache, backbone.fingerprint)
    again, r = embed_trajectories(trajectories, backbone, resumed_cache, progress=False)
    assert r["computed"] == 0
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a, b)


def test_train_and_score_with_a_causal_backbone_folder(tmp_path, small_jsonl, minilm, capsys):
    from conftest import tiny_causal_lm

    import os

    folder = tiny_causal_lm("llama", tmp_path / "tiny-llama", minilm.path)
    cache = str(tmp_path / "cache")
    here = os.getcwd()
    os.chdir(tmp_path)  # the backbone named by a relative path, as users do
    try:
        assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "2",
                     "--backbone", "tiny-llama", "--pooling", "last", "--cache", cache,
                     *SMALL_HEAD]) == 0
    finally:
        os.chdir(here)
    assert "24 computed" in capsys.readouterr().out
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["embedding"]
    assert saved["config"]["layer"] == -1 and saved["fingerprint"]["single_pass"] is True
    # a backbone given by path is stored as given and as an absolute path
    assert saved["config"]["backbone"] == "tiny-llama"
    assert saved["backbone_path"] == str(folder.resolve())  # so scoring works from anywhere
    assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--cache", cache,
                 "--no-progress", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 24 and all(0.0 < p < 1.0 for p in rows[0]["step_probs"])
    # another pooling means other features: the saved head refuses them
    from prmkit.errors import PrmkitError
    from prmkit.model import PRMHead

    with pytest.raises(PrmkitError, match="pooling: trained with 'last', given 'step'"):
        PRMHead.from_pretrained(tmp_path / "m", dict(saved["fingerprint"], pooling="step"))


def test_train_and_score_read_any_format(tmp_path, small_jsonl, capsys):
    trl = tmp_path / "trl.jsonl"
    assert main(["data", "convert", str(small_jsonl), str(trl), "--from", "jsonl", "--to",
                 "trl"]) == 0
    assert '"labels": [true' in trl.read_text()  # TRL writes booleans
    cache = str(tmp_path / "cache")
    assert main(["train", str(trl), "--format", "trl", "--out", str(tmp_path / "m"), "--epochs",
                 "1", "--cache", cache, *MINILM, *SMALL_HEAD]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "m"), str(trl), "--format", "trl", "--cache", cache,
                 "--no-progress", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 24


def test_bad_head_settings_fail_before_any_embedding(tmp_path, small_jsonl, capsys):
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--num-heads", "0",
                 "--cache", str(tmp_path / "cache")]) == 2
    assert "num_heads must be positive" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing was embedded


def test_a_path_that_is_neither_file_nor_hub_name_is_a_clear_error(capsys):
    assert main(["data", "stats", "no/such/folder"]) == 2
    err = capsys.readouterr().err
    assert "no/such/folder" in err and "Traceback" not in err


def test_a_step_with_no_tokens_is_named_by_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "labels": [1]}\n'
                   '{"question": "What is 2 + 2?", "steps": ["2 + 2 = 4.", "\\u0301\\u0301"]}\n')
    assert main(["train", str(bad), "--out", str(tmp_path / "m"), "--cache",
                 str(tmp_path / "cache"), "--backbone", "minilm"]) == 2
    assert f"{bad}:2: steps[1]: the step produces no tokens" in capsys.readouterr().err


def test_a_corrupted_cache_never_changes_a_score(tmp_path, small_jsonl, capsys):
    cache = tmp_path / "cache"
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--cache", str(cache), *MINILM, *SMALL_HEAD]) == 0
    capsys.readouterr()
    score = ["score", str(tmp_path / "m"), str(small_jsonl), "--cache", str(cache),
             "--no-progress", "--json"]
    assert main(score) == 0
    clean = capsys.readouterr().out
    assert main(["cache", "verify", "--cache", str(cache)]) == 0
    assert "corrupt:" not in capsys.readouterr().out
    shard = next(cache.glob("*/shard-*.npy"))
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x40  # one flipped bit in one stored number
    shard.write_bytes(bytes(data))
    assert main(["cache", "verify", "--cache", str(cache)]) == 1
    assert "SHA-256" in capsys.readouterr().out
    assert main(score) == 0
    assert capsys.readouterr().out == clean  # recomputed, not served
    assert main(["cache", "verify", "--cache", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["corrupt"] == []


def test_no_progress_leaves_stderr_free_of_bars_and_a_hub_id_loads_offline(tmp_path,
                                                                           small_jsonl):
    import os
    import shutil

    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--cache", cache, *MINILM, *SMALL_HEAD]) == 0
    # the model folder laid out as the hub's cache holds a downloaded repository
    repo = tmp_path / "hub" / "models--someone--tiny-prm"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "summary.json"):
        shutil.copy(tmp_path / "m" / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "prmkit.cli", "score", "someone/tiny-prm", str(small_jsonl),
               "--no-cache", "--no-progress"]
    proc = subprocess.run(command + ["--json"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 24 and rows[0]["id"].startswith("q-") and proc.stderr == ""
    # without --json: prmkit's own one-line report, and no bar from prmkit, transformers or hub
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "%|" not in proc.stderr and "\r" not in proc.stderr and "Loading" not in proc.stderr
    assert proc.stderr.startswith("embeddings: 0 cached, 24 computed")
    assert len(proc.stderr.splitlines()) == 1


def test_version_and_help_show_each_default_once_with_examples(capsys):
    from prmkit import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"prmkit {__version__}"
    for command in (["train"], ["score"], ["eval"], ["embed"], ["data", "convert"],
                    ["cache", "gc"], ["ablate"], ["demo"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "examples:\n  prmkit " in text and "(default: None)" not in text
        for line in text.split("\n  -")[1:]:
            assert line.count("default") <= 2, line  # once in the text, at most once more
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS most epochs to train (default: 30)" in text
    assert text.count("(default: smollm2)") == 1


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    # SIGTERM mid-run ends like Ctrl-C: the atomic writer's temporary file is removed
    import os
    import signal
    import time

    out = tmp_path / "world.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", f"""
import os, signal, sys, time
from prmkit import cli, records
real = records.atomic_open
def slow(path, mode="w"):
    cm = real(path, mode)
    class Slow:
        def __enter__(self):
            f = cm.__enter__(); print("writing", flush=True); time.sleep(60); return f
        def __exit__(self, *a):
            return cm.__exit__(*a)
    return Slow()
records.atomic_open = slow
sys.exit(cli.main(["data", "synthetic", "--out", {str(out)!r}, "--problems", "2",
                   "--pool", "2"]))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []  # neither the output nor a temporary file


def test_an_ensemble_scores_with_its_spread(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--ensemble", "2", "--cache", cache, *MINILM, *SMALL_HEAD]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--cache", cache,
                 "--no-progress", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(row["step_spread"]) == len(row["step_probs"]) == 3
    assert all(0 <= s <= 0.5 for s in row["step_spread"]) and max(row["step_spread"]) > 0
