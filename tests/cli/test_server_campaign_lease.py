"""``lwm2m server --campaign-lease``: seconds a firmware campaign's lease lasts unrenewed (15 by
default); a bad value is one line naming the option. A node given it takes a dead node's
campaigns over that soon: tests/fleet/test_campaigns_kill.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lwm2m.cli import main
from lwm2m.cli.server_cmd import campaigns_config
from lwm2m.fleet.campaigns import CampaignsConfig


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_campaign_lease_is_one_line_naming_the_option(value: str) -> None:
    result = CliRunner().invoke(main, ["server", "--store", "memory", "--campaign-lease", value])
    assert result.exit_code == 2
    assert "--campaign-lease" in result.output and value in result.output
    assert "Traceback" not in result.output


def test_the_lease_given_reaches_the_campaigns_and_none_keeps_the_default() -> None:
    assert campaigns_config(None) is None
    assert campaigns_config(2.5) == CampaignsConfig(lease=2.5)
    help_text = CliRunner().invoke(main, ["server", "--help"]).output
    assert "--campaign-lease" in help_text and "[default: 15]" in help_text
    assert CampaignsConfig().lease == 15.0
