"""Numbered schema changes made after setup.sql, each applied once per database."""

from __future__ import annotations

# (step number, SQL). Append only; never edit a step that has shipped.
STEPS: list[tuple[int, str]] = []
