"""The `doppel` command: a thin Typer layer over the library, one module per command group.

`doppel.cli:app` is the Typer application and `doppel.cli:main` the console script.
"""

from __future__ import annotations

import os

import typer

from doppel.cli import find, ingest, resemble, serve
from doppel.cli.db import db_app, index_app
from doppel.cli.models import models_app
from doppel.config import load_dotenv_once

app = typer.Typer(
    help="Find look-alikes in a face gallery, and tell whom a face resembles.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a DSN holds a password
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")
app.command("ingest")(ingest.ingest_cmd)
app.command("load-dump")(ingest.load_dump_cmd)
app.command("find")(find.find_cmd)
app.command("resemble")(resemble.resemble_cmd)
app.command("serve")(serve.serve_cmd)


def main() -> None:
    load_dotenv_once()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app(prog_name="doppel")


if __name__ == "__main__":  # pragma: no cover
    main()
