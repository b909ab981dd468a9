"""``lwm2m server --store``: sqlite, memory or a store URL; a bad value or URL gets a line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lwm2m.cli import main
from lwm2m.cli.server_cmd import store_url


def lwm2m(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_a_value_that_is_no_kind_and_no_url_is_named() -> None:
    result = lwm2m("server", "--store", "postgres")
    assert result.exit_code == 2
    assert "'--store': 'postgres': give sqlite, memory or a store URL" in result.output


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("ftp://host/x", "unknown scheme 'ftp'"),
        ("redis://", "no host"),
        ("redis://127.0.0.1:6379/x", "the database 'x' is not a number"),
    ],
)
def test_a_bad_url_is_named(url: str, named: str) -> None:
    result = lwm2m("server", "--store", url, "--coap-port", "0", "--http-port", "0")
    assert result.exit_code != 0
    assert "--store:" in result.output
    assert named in result.output


def test_kinds_and_urls(tmp_path: Path) -> None:
    assert store_url(str(tmp_path), "memory") == "memory://"
    assert store_url(str(tmp_path), None) == f"sqlite://{(tmp_path / 'lwm2m.db').absolute()}"
    assert store_url(str(tmp_path), "sqlite") == store_url(str(tmp_path), None)
    assert store_url(str(tmp_path), "redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"
