"""The ``lwm2m`` console script: one click group, a module per subcommand family."""

from __future__ import annotations

import click

from lwm2m import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lwm2m")
def main() -> None:
    """OMA LightweightM2M server, client, bootstrap server and tools."""


def _register() -> None:
    # Subcommand modules import heavier layers; keep `lwm2m --help` quick.
    import importlib

    for name in (
        "bootstrap_cmd",
        "campaign_cmd",
        "client_cmd",
        "codec_cmd",
        "demo_cmd",
        "firmware_cmd",
        "models_cmd",
        "security_cmd",
        "server_cmd",
        "simulate_cmd",
    ):
        importlib.import_module(f"lwm2m.cli.{name}")


_register()
