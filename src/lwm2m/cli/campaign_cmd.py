"""``lwm2m campaign``: firmware update campaigns of a running server, through its REST API
(``/api/campaigns``).

::

    lwm2m campaign create PACKAGE_ID --target 'lamp-*' --canary 5% --batch 100 --in-flight 20 \\
        --retries 2 --backoff 60 --halt-after 2% --window 22:00-05:00
    lwm2m campaign list
    lwm2m campaign show ID            # counts, waves, the failed devices with their Update Result
    lwm2m campaign pause|resume|cancel|delete ID
"""

from __future__ import annotations

from typing import Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.cli.firmware_cmd import _api_options
from lwm2m.cli.remote import api_call
from lwm2m.transport.http import url_path


def _share(value: str | None, option: str) -> int | str | None:
    """A count (``5``) or a percentage (``5%``)."""
    if value is None:
        return None
    if value.endswith("%"):
        return value
    if not value.isdigit():
        fail(f"{option} {value!r}: a count (5) or a percentage (5%)")
    return int(value)


def _summary(campaign: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(campaign["counts"].items())) or "no devices"
    reason = f" ({campaign['reason']})" if campaign.get("reason") else ""
    return f"{campaign['id']}  {campaign['status']}{reason}  package {campaign['packageId']}  {counts}"


@main.group()
def campaign() -> None:
    """Firmware update campaigns: a package to many devices, in waves, followed through object 5."""


@campaign.command("create")
@click.argument("package_id", metavar="PACKAGE_ID")
@click.option("--target", "endpoints", default="*", show_default=True, help="endpoint glob")
@click.option(
    "--object", "object_id", type=int, default=5, show_default=True, help="an object the devices have"
)
@click.option("--version-path", type=click.Choice(["/3/0/3", "/5/0/7"]), default="/3/0/3", show_default=True)
@click.option("--version-is", default=None, help="only devices whose current version is this")
@click.option("--version-is-not", default=None, help="only devices whose current version is not this")
@click.option("--delivery", type=click.Choice(["auto", "pull", "push"]), default="auto", show_default=True)
@click.option("--canary", default="1", show_default=True, help="devices of the canary wave: N or N%")
@click.option("--batch", type=int, default=100, show_default=True, help="devices per wave after the canary")
@click.option("--in-flight", type=int, default=10, show_default=True, help="devices updated at a time")
@click.option("--retries", type=int, default=2, show_default=True, help="tries after a failed one")
@click.option("--backoff", type=float, default=30.0, show_default=True, help="seconds before the first retry")
@click.option("--halt-after", default=None, help="halt when failures pass N or N%")
@click.option("--window", default=None, help="HH:MM-HH:MM (UTC): start devices only then")
@_api_options
def create(
    package_id: str,
    endpoints: str,
    object_id: int,
    version_path: str,
    version_is: str | None,
    version_is_not: str | None,
    delivery: str,
    canary: str,
    batch: int,
    in_flight: int,
    retries: int,
    backoff: float,
    halt_after: str | None,
    window: str | None,
    api: str,
    api_token: str | None,
) -> None:
    """Start a campaign of the package PACKAGE_ID (see ``lwm2m firmware list``)."""
    target: dict[str, Any] = {"endpoints": endpoints, "objectId": object_id, "versionPath": version_path}
    if version_is is not None:
        target["versionEqual"] = version_is
    if version_is_not is not None:
        target["versionNotEqual"] = version_is_not
    body: dict[str, Any] = {
        "packageId": package_id,
        "target": target,
        "delivery": delivery,
        "waves": {"canary": _share(canary, "--canary"), "batch": batch, "inFlight": in_flight},
        "retries": {"attempts": retries, "backoff": backoff},
    }
    if halt_after is not None:
        body["haltAfter"] = _share(halt_after, "--halt-after")
    if window is not None:
        start, _, end = window.partition("-")
        body["window"] = {"start": start, "end": end}
    status, answer = api_call(api, api_token, "POST", "/api/campaigns", body)
    if status != 201:
        fail(str(answer["error"]))
    click.echo(f"started {_summary(answer)}")
    click.echo("  waves: " + " ".join(str(w["devices"]) for w in answer["waves"]))


@campaign.command("list")
@_api_options
def list_(api: str, api_token: str | None) -> None:
    """The campaigns, oldest first."""
    status, answer = api_call(api, api_token, "GET", "/api/campaigns")
    if status != 200:
        fail(str(answer["error"]))
    if not answer:
        click.echo("no campaigns")
    for one in answer:
        click.echo(_summary(one))


@campaign.command("show")
@click.argument("campaign_id", metavar="ID")
@_api_options
def show(campaign_id: str, api: str, api_token: str | None) -> None:
    """A campaign: its counts, each wave's progress, the failed devices with their Update Result."""
    status, answer = api_call(api, api_token, "GET", url_path("api", "campaigns", campaign_id))
    if status != 200:
        fail(f"{campaign_id}: {answer['error']}")
    click.echo(_summary(answer))
    for n, wave in enumerate(answer["waves"]):
        name = "canary" if n == 0 else f"wave {n}"
        click.echo(
            f"  {name}: {wave['devices']} devices, {wave['succeeded']} succeeded, {wave['failed']} failed,"
            f" {wave['pending']} pending"
        )
    for device in answer["deviceDetail"]:
        if device["state"] == "failed":
            click.echo(
                f"  failed {device['endpoint']}: Update Result {device['result']} ({device['resultText']})"
            )


# Seconds an action may take: a cancel tells the devices in flight (10 s each at most, side by
# side), and on a cluster a node whose runner was killed waits for its lease to lapse first.
ACTION_TIMEOUT = 60.0


def _action(name: str, summary: str, method: str = "POST") -> None:
    @campaign.command(name, help=summary)
    @click.argument("campaign_id", metavar="ID")
    @_api_options
    def act(campaign_id: str, api: str, api_token: str | None) -> None:
        parts = (
            ("api", "campaigns", campaign_id)
            if method == "DELETE"
            else ("api", "campaigns", campaign_id, name)
        )
        status, answer = api_call(api, api_token, method, url_path(*parts), timeout=ACTION_TIMEOUT)
        if status != 200:
            fail(f"{campaign_id}: {answer['error']}")
        click.echo(_summary(answer))


_action("pause", "Pause the campaign ID: devices in flight go on, no new one starts.")
_action("resume", "Resume the paused or halted campaign ID.")
_action("cancel", "Cancel the campaign ID: the devices not done are cancelled.")
_action("delete", "Delete the campaign ID, done or cancelled, and its record.", method="DELETE")
