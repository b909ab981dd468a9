"""The Register's fast paths: plain object lists (``</1/0>,</3303>;ver=1.1``) are read as the
link-format parser reads them (LwM2M-TS-Core 1.2 §6.2.1: the same ObjectList, or the fast path
steps aside and the parser reads or refuses it), the Registration Interface's routing reads the
path as ``uri_path`` does, registration IDs drawn in batches stay a process's own."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import RegistrationError
from lwm2m.protocol import registration
from lwm2m.protocol.registration import ObjectLink, ObjectList, new_registration_id, rd_segments

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDS = st.sampled_from(["0", "1", "3", "3303", "65534", "65535", "99999", "00", "01", "123456", "", "x"])
LINK = st.builds(
    lambda o, i, ver: f"</{o}{'' if i is None else '/' + i}>{ver}",
    IDS,
    st.none() | IDS,
    st.sampled_from(["", ";ver=1.1", ";ver=2.0", ';ver="1.1"', ";ver=1", ";ver=1.1.1", ";VER=1.0", ";rt=x"]),
)
SEPARATORS = st.sampled_from([",", ", ", ",,", ";", ""])


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    links = draw(st.lists(LINK, min_size=0, max_size=6))
    text = ""
    for n, link in enumerate(links):
        text += (draw(SEPARATORS) if n else "") + link
    if draw(st.booleans()):
        text = draw(st.sampled_from(['</>;rt="oma.lwm2m",', " ", "<", "</>,"])) + text
    raw = text.encode()
    if draw(st.integers(0, 9)) == 0:
        raw += draw(st.binary(max_size=4))
    return raw


def outcome(read: object, payload: bytes, max_links: int | None) -> object:
    try:
        return read(payload, max_links=max_links)  # type: ignore[operator]
    except RegistrationError as exc:
        return ("refused", str(exc))


@FUZZ
@given(payloads(), st.none() | st.integers(0, 4))
def test_the_fast_path_reads_as_the_parser(payload: bytes, max_links: int | None) -> None:
    assert outcome(ObjectList.parse, payload, max_links) == outcome(
        ObjectList.parse_links, payload, max_links
    )


@FUZZ
@given(payloads())
def test_the_fast_path_takes_only_what_the_parser_takes_alike(payload: bytes) -> None:
    plain = registration._read_plain(payload)
    if plain is not None:
        assert plain == ObjectList.parse_links(payload)


def test_plain_payloads_are_read_once_and_shared() -> None:
    payload = b"</1/0>,</3/0>,</3303>;ver=1.1"
    first = ObjectList.parse(payload)
    assert first.objects == (ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, None, "1.1"))
    assert ObjectList.parse(bytes(bytearray(payload))) is first
    # Over max_links: refused as the parser refuses it, though the list was read before.
    assert outcome(ObjectList.parse, payload, 2) == (
        "refused",
        "payload has 3 links; this server takes at most 2",
    )


def test_the_read_payloads_kept_are_bounded() -> None:
    for n in range(registration._PLAIN_READ_ENTRIES + 50):
        ObjectList.parse(f"</{n}/0>".encode())
    assert len(registration._PLAIN_READ) <= registration._PLAIN_READ_ENTRIES
    long = ",".join(f"</{n}/0>" for n in range(300)).encode()
    assert len(long) > registration._PLAIN_READ_BYTES
    assert len(ObjectList.parse(long).objects) == 300
    assert long not in registration._PLAIN_READ


OPTIONS = st.lists(
    st.tuples(
        st.sampled_from([3, 11, 12, 15, 60]), st.sampled_from([b"rd", b"r", b"rd2", b"", b"\xff", b"x"])
    ),
    max_size=5,
)


@FUZZ
@given(OPTIONS)
def test_rd_segments_reads_the_path_as_uri_path(options: list[tuple[int, bytes]]) -> None:
    message = Message(Type.CON, Code.POST, options=tuple(sorted(options, key=lambda o: o[0])))
    path = message.uri_path
    assert rd_segments(message) == (len(path) if path[:1] == ("rd",) else 0)


def test_a_forked_process_draws_registration_ids_of_its_own() -> None:
    new_registration_id()  # the pool holds unused random bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ID, to the parent
        os.write(write, new_registration_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != new_registration_id()
