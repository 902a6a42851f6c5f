"""The bad-input corpus: every kind of bad input or output path, through train / score / embed /
convert, ends with exit code 2, a message naming file (and line and field where there is one),
no traceback, and nothing written or half-written."""

import json
import os

import pytest

from prmkit.cli import main

from conftest import make_rows

FAST = ["--backbone", "minilm", "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2",
        "--epochs", "1", "--no-progress"]
GOOD = json.dumps(make_rows(1)[0])


def lines(*rows: str) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


def record(**fields) -> str:
    return json.dumps({"question": "What is 2 + 3?", "steps": ["2 + 3 = 5."], **fields})


# name -> (file bytes, where the error must point: "line:field" after the path, or "")
BAD_DATA = {
    "invalid JSON": (lines(GOOD, '{"question": "q", "steps": [}'), ":2: invalid JSON"),
    "NaN label": (lines(GOOD, record(labels=[float("nan")])), ":2: labels[0]: number NaN"),
    "duplicate keys": (lines(GOOD, '{"question": "a", "question": "b", "steps": ["x"]}'),
                       ":2: question: duplicate key"),
    "lone surrogate": (lines(GOOD, record(steps=["5 \ud800 5."]).replace("\\ud800", "\\ud800")),
                       ":2: steps[0]: holds a lone surrogate"),
    "zero-width question": (lines(GOOD, json.dumps({"question": "\u200b\u200d",
                                                    "steps": ["a"]})),
                            ":2: question: must not be empty (or only invisible"),
    "zero-width step": (lines(GOOD, record(steps=["ok", "\ufeff\u2060"])),
                        ":2: steps[1]: empty step (or only invisible"),
    "nested 100000 deep": (lines(GOOD, "[" * 100_000 + "]" * 100_000),
                           ":2: JSON nested more than 64"),
    "not UTF-8": (lines(GOOD) + b'{"question": "\xff"}\n', ":2: not UTF-8"),
    "empty file": (b"", ": no trajectories"),
    "unknown field": (lines(record(lables=[1])), ":1: lables: unknown field"),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(4)))
    cache = folder / "cache"
    assert main(["train", str(data), "--out", str(folder / "m"), "--cache", str(cache),
                 "--max-steps", "4", *FAST]) == 0
    return folder / "m", cache


def commands(model, data, tmp_path):
    m, cache = model
    return {
        "train": ["train", str(data), "--out", str(tmp_path / "out"), "--cache", str(cache),
                  *FAST],
        "score": ["score", str(m), str(data), "--out", str(tmp_path / "out.jsonl"), "--cache",
                  str(cache), "--no-progress"],
        "embed": ["embed", str(data), "--cache", str(cache), "--backbone", "minilm",
                  "--no-progress"],
        "convert": ["data", "convert", str(data), str(tmp_path / "out.jsonl"), "--from",
                    "jsonl", "--to", "trl"],
    }


def nothing_written(tmp_path, data_name):
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != data_name)
    inside = sorted(os.listdir(tmp_path / "out")) if (tmp_path / "out").is_dir() else []
    return left in ([], ["out"]) and inside == []


@pytest.mark.parametrize("command", ["train", "score", "embed", "convert"])
@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_data(tmp_path, model, capsys, command, kind):
    content, where = BAD_DATA[kind]
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    capsys.readouterr()
    assert main(commands(model, data, tmp_path)[command]) == 2
    err = capsys.readouterr().err
    assert f"{data}{where}" in err, err
    assert "Traceback" not in err and nothing_written(tmp_path, "data.jsonl")


@pytest.mark.parametrize("command", ["train", "score", "embed", "convert"])
@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_inputs_that_are_not_regular_files(tmp_path, model, capsys, command, kind):
    data = tmp_path / "data.jsonl"
    if kind == "fifo":
        os.mkfifo(data)  # reading it would block forever
    elif kind == "folder":
        data.mkdir()
    capsys.readouterr()
    assert main(commands(model, data, tmp_path)[command]) == 2
    err = capsys.readouterr().err
    words = {"fifo": "not a regular file", "folder": "no .jsonl or .json files" if command ==
             "convert" else "not a regular file (a folder)", "missing": "no such file"}[kind]
    assert str(data) in err and words.lower() in err.lower(), err


@pytest.mark.parametrize("command, steps, limit", [("train", 5, "max_steps=4"),
                                                   ("score", 5, "max_steps=4")])
def test_too_many_steps_is_refused_by_line_before_embedding(tmp_path, model, capsys, command,
                                                            steps, limit):
    data = tmp_path / "data.jsonl"
    data.write_bytes(lines(GOOD, record(steps=[f"step {i}." for i in range(steps)])))
    argv = commands(model, data, tmp_path)[command]
    if command == "train":
        argv += ["--max-steps", "4"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: steps: {steps} steps, more than {limit}" in err, err
    assert "embeddings:" not in capsys.readouterr().out  # refused before any embedding


# --- output paths ---------------------------------------------------------------------------------

def test_convert_never_replaces_its_own_input(tmp_path, capsys):
    data = tmp_path / "a.jsonl"
    data.write_bytes(lines(GOOD))
    before = data.read_bytes()
    assert main(["data", "convert", str(data), str(data), "--from", "jsonl", "--to", "trl",
                 "--overwrite"]) == 2
    assert "is also an input" in capsys.readouterr().err and data.read_bytes() == before


@pytest.mark.parametrize("argv", [
    ["data", "convert", "{data}", "{out}", "--from", "jsonl"],
    ["data", "synthetic", "--out", "{out}", "--problems", "2", "--pool", "2"],
    ["score", "{model}", "{data}", "--out", "{out}", "--cache", "{cache}", "--no-progress"],
])
def test_existing_outputs_are_replaced_only_with_overwrite(tmp_path, model, capsys, argv):
    data, out = tmp_path / "a.jsonl", tmp_path / "out.jsonl"
    data.write_bytes(lines(GOOD))
    out.write_text("precious\n")
    names = {"data": data, "out": out, "model": model[0], "cache": model[1]}
    argv = [a.format(**names) for a in argv]
    assert main(argv) == 2
    assert "exists; pass overwrite=True (--overwrite on the command line)" in \
        capsys.readouterr().err
    assert out.read_text() == "precious\n"
    assert main(argv + ["--overwrite"]) == 0 and out.read_text() != "precious\n"
    out.unlink()
    out.mkdir()  # a folder where a file goes
    assert main(argv + ["--overwrite"]) == 2 and "is a folder" in capsys.readouterr().err


def test_train_refuses_a_finished_model_a_file_and_a_locked_folder(tmp_path, model, capsys):
    from prmkit._io import file_lock

    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(2)))
    argv = ["train", str(data), "--cache", str(model[1]), *FAST]
    assert main(argv + ["--out", str(model[0])]) == 2
    assert "holds a trained model; pass overwrite=True" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(argv + ["--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    with file_lock(tmp_path / "busy"):  # as if another train were writing there
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "prmkit.cli", *argv, "--out",
                               str(tmp_path / "busy")], capture_output=True, text=True)
    assert proc.returncode == 2 and "is locked: another prmkit train" in proc.stderr
    assert os.listdir(tmp_path / "busy") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(tmp_path, capsys):
    data = tmp_path / "a.jsonl"
    data.write_bytes(lines(GOOD))
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["data", "convert", str(data), str(locked / "x.jsonl"), "--from",
                     "jsonl"]) == 2
        assert "is not a writable folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, model, capsys):
    # (runs as root too, unlike the read-only folder above)
    data = tmp_path / "a.jsonl"
    data.write_bytes(lines(GOOD))
    (tmp_path / "plain").write_text("x")
    for argv in (["data", "convert", str(data), str(tmp_path / "plain" / "x.jsonl"), "--from",
                  "jsonl"],
                 ["score", str(model[0]), str(data), "--out", str(tmp_path / "plain" / "s"),
                  "--cache", str(model[1]), "--no-progress"],
                 ["train", str(data), "--out", str(tmp_path / "plain" / "m"), *FAST]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is not a writable folder" in err and "embeddings:" not in err, err
