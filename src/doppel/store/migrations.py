"""Numbered schema changes made after setup.sql, each applied once per database."""

from __future__ import annotations

# (step number, SQL). Append only; never edit a step that has shipped.
STEPS: list[tuple[int, str]] = [
    # Rows with a 512-d vector (about 2.1 kB) stay inline instead of going to TOAST.
    (1, "ALTER TABLE faces SET (toast_tuple_target = 8160)"),
]
