import os
import stat

import pytest

from prmkit._io import atomic_open, input_paths, write_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_json(tmp_path / "a.json", {"a": 1})
    with atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"x")
    for name in ("a.json", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("new")
            raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_input_paths_are_the_data_file_and_the_files_of_model_folders(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "head.safetensors").write_text("")
    found = input_paths(tmp_path / "data.jsonl", model, tmp_path / "extra.json")
    assert found[0] == tmp_path / "data.jsonl" and found[-1] == tmp_path / "extra.json"
    assert sorted(p.name for p in found[1:-1]) == ["config.json", "head.safetensors"]
    # records given as a list are no file: only the folder's files remain
    assert sorted(input_paths([], model)) == sorted(model.iterdir())
