"""`doppel db cluster`: a local Citus cluster (a coordinator and workers) under DOPPEL_HOME."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import command_settings, err, friendly, out

cluster_app = typer.Typer(
    help="A local Citus cluster: one gallery spread over a coordinator and workers.",
    no_args_is_help=True,
)


@cluster_app.command("start")
@friendly
def cluster_start(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker nodes, each its own server (default 2, or the cluster's own).",
        ),
    ] = None,
) -> None:
    """Start a coordinator and N workers; doppel commands use the cluster until `stop`.

    Citus is built from its vendored source the first time (about a minute to ten,
    once per machine). A cluster started before keeps its data and its workers.
    """
    from doppel.store.citus import start

    settings = command_settings()
    cluster = start(settings, workers, lambda line: err.print(line, highlight=False))
    out.print(f"{cluster.describe()} is running", highlight=False)
    out.print(
        "doppel commands with this DOPPEL_HOME now use its coordinator; "
        "`doppel db cluster stop` goes back to the single embedded server",
        highlight=False,
    )


@cluster_app.command("build")
@friendly
def cluster_build(
    if_compiler: Annotated[
        bool,
        typer.Option(
            "--if-compiler",
            help=(
                "Where Citus cannot be built (no C compiler, no source), say so and succeed "
                "(the Citus tests then skip)."
            ),
        ),
    ] = False,
) -> None:
    """Build Citus for the local cluster now (once per machine; `start` does it too)."""
    from doppel.store.citus_build import cannot_build, ensure_citus

    settings = command_settings()
    reason = cannot_build(settings) if if_compiler else None
    if reason is not None:
        err.print(f"Citus not built: {reason}; the Citus tests will be skipped", highlight=False)
        return
    install = ensure_citus(settings, lambda line: err.print(line, highlight=False))
    out.print(f"Citus is built: {install.prefix}", highlight=False)


@cluster_app.command("status")
@friendly
def cluster_status() -> None:
    """Each node of the local cluster, whether it runs, and the shards of faces it holds."""
    from doppel.store.citus import load, node_states

    settings = command_settings()
    cluster = load(settings)
    if cluster is None:
        out.print("no local Citus cluster; `doppel db cluster start --workers 2` makes one")
        return
    used = "in use" if cluster.running else "stopped (doppel uses the single embedded server)"
    out.print(f"{cluster.describe()}: {used}", highlight=False)
    print_nodes(node_states(settings))


def print_nodes(states: list) -> None:  # type: ignore[type-arg]
    table = Table(title="nodes")
    for column in ("node", "address", "server", "shards of faces"):
        table.add_column(column)
    for state in states:
        table.add_row(
            state.node.name,
            state.node.address,
            "running" if state.running else "down",
            str(state.shards),
        )
    out.print(table)


@cluster_app.command("stop")
@friendly
def cluster_stop(
    delete: Annotated[
        bool,
        typer.Option("--delete", help="Also delete the cluster's data (every node's folder)."),
    ] = False,
) -> None:
    """Stop every node; doppel goes back to the single embedded server (data kept)."""
    from doppel.store.citus import load, stop

    settings = command_settings()
    if load(settings) is None:
        out.print("no local Citus cluster under this DOPPEL_HOME")
        return
    stopped = stop(settings, delete=delete)
    what = ", ".join(stopped) if stopped else "nothing was running"
    out.print(f"stopped: {what}", highlight=False)
    out.print(
        "the cluster's data is deleted"
        if delete
        else "doppel uses the single embedded server again; "
        "`doppel db cluster start` brings the cluster back with its data",
        highlight=False,
    )
