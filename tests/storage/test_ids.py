"""Ids that people type (``lwm2m campaign pause ID``, ``lwm2m firmware rm ID``) never begin with
``-``, which a command line reads as an option; they keep their randomness otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lwm2m.storage import ids
from lwm2m.storage.ids import random_id


def test_a_draw_beginning_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: Iterator[str] = iter(["-AbC", "-xyz", "q-rs"])
    monkeypatch.setattr(ids.secrets, "token_urlsafe", lambda n: next(draws))
    assert random_id(3) == "q-rs"


def test_ids_are_url_safe_and_distinct() -> None:
    drawn = [random_id(9) for _ in range(3000)]
    assert not any(i.startswith("-") for i in drawn)
    assert len(set(drawn)) == 3000 and all(len(i) == 12 for i in drawn)
