"""The ``lwm2m`` console script: one click group, a module per subcommand family."""

from __future__ import annotations

import importlib

import click

from lwm2m import __version__

# Each subcommand and the module that defines it: a module is imported when its subcommand runs
# (or for `lwm2m --help`), so that `lwm2m client` does not import the server, nor the server the
# simulator.
_MODULES = {
    "bootstrap": "bootstrap_cmd",
    "campaign": "campaign_cmd",
    "client": "client_cmd",
    "decode": "codec_cmd",
    "demo": "demo_cmd",
    "encode": "codec_cmd",
    "firmware": "firmware_cmd",
    "models": "models_cmd",
    "security": "security_cmd",
    "server": "server_cmd",
    "simulate": "simulate_cmd",
}


class _Commands(click.Group):
    """The ``lwm2m`` group: a subcommand's module is imported when the subcommand is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"lwm2m.cli.{module}")  # its decorators add it to this group
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lwm2m")
def main() -> None:
    """OMA LightweightM2M server, client, bootstrap server and tools."""
