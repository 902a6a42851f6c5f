"""prmkit: Process Reward Models, from step-labelled data to scored, searched, evaluated solutions."""

from prmkit.errors import DataError, PrmkitError
from prmkit.records import Trajectory, read_jsonl, write_jsonl

__version__ = "0.1.0"
__all__ = ["DataError", "PrmkitError", "Trajectory", "read_jsonl", "write_jsonl", "__version__"]
