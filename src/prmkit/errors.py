"""Errors a user can act on. The CLI prints them (no traceback) and exits with code 2."""

from __future__ import annotations


class PrmkitError(Exception):
    """Bad input or a refused operation, with a message meant for the user."""


class DataError(PrmkitError):
    """A problem in an input file, located by file, line and field.

    >>> str(DataError("bad label", path="a.jsonl", line=3, field="labels[1]"))
    'a.jsonl:3: labels[1]: bad label'
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        where = ":".join(str(p) for p in (path, line) if p is not None)
        parts = [p for p in (where, field) if p]
        super().__init__(": ".join(parts + [message]))
