"""LogBudget: lines a flood can cause, bounded per category and window, with a virtual clock."""

from __future__ import annotations

import logging

import pytest

from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.option import BlockOption


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def lines() -> object:
    logger = logging.getLogger("lwm2m.test.logbudget")
    handler = Lines()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_ten_thousand_lines_in_a_window_are_burst_lines_and_one_count(lines: Lines) -> None:
    budget = LogBudget(logging.getLogger("lwm2m.test.logbudget"), window=10.0, burst=20)
    written = [
        budget.log("refusals", 100.0 + i * 0.0005, logging.INFO, "refused %d", i) for i in range(10_000)
    ]
    assert written.count(True) == 20 and written[:20] == [True] * 20
    assert lines.at(logging.INFO) == [f"refused {i}" for i in range(20)]
    assert budget.next_due() == pytest.approx(110.0)
    budget.tick(109.9)
    assert not lines.at(logging.WARNING)
    budget.tick(110.0)
    (count,) = lines.at(logging.WARNING)
    assert count == "9980 more refusals in 10 s not logged one by one (the latest: refused 9999)"
    assert budget.next_due() is None
    assert len(lines.records) == 21


def test_a_flood_over_many_windows_stays_within_burst_plus_one_line_per_window(lines: Lines) -> None:
    budget = LogBudget(logging.getLogger("lwm2m.test.logbudget"), window=10.0, burst=20)
    for i in range(10_000):  # 100 s of refusals, 100 a second
        budget.log("refusals", i * 0.01, logging.INFO, "refused %d", i)
    budget.flush()
    assert len(lines.at(logging.INFO)) == 10 * 20
    counts = lines.at(logging.WARNING)
    assert len(counts) == 10
    told = sum(int(line.split()[0]) for line in counts)
    assert told + 200 == 10_000  # every line is written or counted


def test_each_category_has_its_own_budget(lines: Lines) -> None:
    budget = LogBudget(logging.getLogger("lwm2m.test.logbudget"), window=10.0, burst=2)
    for i in range(1000):
        budget.log("4.08", 1.0, logging.INFO, "incomplete %d", i)
    assert budget.log("4.03", 1.0, logging.INFO, "forbidden") is True
    assert lines.at(logging.INFO) == ["incomplete 0", "incomplete 1", "forbidden"]
    budget.log("4.08", 12.0, logging.INFO, "incomplete again")  # its next window opens: count first
    assert lines.at(logging.WARNING) == [
        "998 more 4.08 in 10 s not logged one by one (the latest: incomplete 999)"
    ]
    assert lines.at(logging.INFO)[-1] == "incomplete again"


def test_categories_are_bounded_and_quiet_ones_are_forgotten(lines: Lines) -> None:
    budget = LogBudget(logging.getLogger("lwm2m.test.logbudget"), window=10.0, burst=1, max_categories=4)
    for i in range(1000):
        budget.log(f"kind {i}", 1.0, logging.INFO, "line %d", i)
    assert len(budget._windows) <= 5  # four, and the one the rest share
    assert len(lines.at(logging.INFO)) == 5
    budget.tick(11.0)
    assert budget._windows == {}
    assert lines.at(logging.WARNING) == [
        "995 more other lines in 10 s not logged one by one (the latest: line 999)"
    ]


def test_lines_below_the_loggers_level_are_neither_written_nor_counted(lines: Lines) -> None:
    budget = LogBudget(logging.getLogger("lwm2m.test.logbudget"), window=10.0, burst=1)
    for _ in range(100):
        assert budget.log("debug lines", 1.0, logging.DEBUG, "detail") is False
    budget.flush()
    assert lines.records == []


def test_bad_configuration_is_refused() -> None:
    logger = logging.getLogger("lwm2m.test.logbudget")
    with pytest.raises(ValueError, match="window"):
        LogBudget(logger, window=0)
    with pytest.raises(ValueError, match="burst"):
        LogBudget(logger, burst=-1)


def _incomplete_block(mid: int, token: bytes) -> bytes:
    # A Block1 block of a transfer the endpoint never saw start: 4.08 (RFC 7959 §2.9.2).
    return Message.build(
        Type.CON,
        Code.PUT,
        mid=mid,
        token=token,
        uri_path="/flood",
        block1=BlockOption(5, True, 6),
        payload=bytes(1024),
    ).encode()


def test_the_endpoint_logs_a_flood_of_refusals_within_its_budget(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m.coap")
    ep = Endpoint(EndpointConfig())
    peer = ("192.0.2.7", 5683)
    for i in range(10_000):
        ep.receive_datagram(_incomplete_block(i, i.to_bytes(4, "big")), peer, now=50.0 + i * 0.0001)
        for data, _ in ep.datagrams_to_send(0):
            assert data[1] == Code.REQUEST_ENTITY_INCOMPLETE
    refusals = [r for r in caplog.records if r.name == "lwm2m.coap.serving"]
    assert len(refusals) == 20
    assert refusals[0].getMessage() == (
        "PUT /flood refused from 192.0.2.7:5683: 4.08 Request Entity Incomplete: "
        "a Block1 block out of order or of an unknown transfer (RFC 7959 §2.9.2)"
    )
    # Another kind of refusal is not hidden by the flood.
    bad = Message.build(
        Type.CON, Code.GET, mid=20_000, token=b"x", options=[(9, b"")]
    ).encode()  # critical, unknown
    ep.receive_datagram(bad, peer, now=51.5)
    assert [r.getMessage() for r in caplog.records if r.name == "lwm2m.coap.serving"][20:] == [
        "GET / refused from 192.0.2.7:5683: 4.02 Bad Option: "
        "an unrecognized critical option (RFC 7252 §5.4.1)"
    ]
    # The endpoint's timer tells the count when the window ends, with no datagram arriving.
    timer = ep.get_timer()
    assert timer is not None and timer <= 60.0
    ep.handle_timer(60.0)
    refusals = [r for r in caplog.records if r.name == "lwm2m.coap.serving"]
    assert len(refusals) == 22
    assert refusals[-1].levelno == logging.WARNING
    assert (
        refusals[-1]
        .getMessage()
        .startswith(
            "9980 more CoAP requests refused with 4.08 Request Entity Incomplete in 10 s "
            "not logged one by one"
        )
    )
