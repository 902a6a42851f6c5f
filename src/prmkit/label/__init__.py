"""Labelling: judging outcomes (and, later, automatic step labels)."""
