"""Generators: continue a solution by one step or to the end (see ``base.py``)."""

from prmkit.generate.base import Completion, GenerationError, Generator, prompt_of, split_steps

__all__ = ["Completion", "GenerationError", "Generator", "prompt_of", "split_steps"]
