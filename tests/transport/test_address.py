"""Socket addresses in the form the endpoint keys its state on (``lwm2m.transport.address``)."""

from __future__ import annotations

import pytest

from lwm2m.transport.address import interned, normalize


def test_an_ipv4_address_as_recvfrom_reports_it_is_handed_back_itself() -> None:
    # A server's requests go to the address a client registered from: no copy per client.
    addr = ("127.64.3.7", 40123)
    assert normalize(addr) is addr
    assert normalize(("0.0.0.0", 0)) == ("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (("127.1", 5683), ("127.0.0.1", 5683)),  # a short form of a literal
        (("10.0.0.01", 5683), ("10.0.0.1", 5683)),  # a leading zero
        (("1.2.3.4", "5683"), ("1.2.3.4", 5683)),  # the port as text
        (["1.2.3.4", 5683], ("1.2.3.4", 5683)),  # a list: a tuple back (a key)
        (("::1", 5683), ("::1", 5683, 0, 0)),
        (("[::1]", 5683), ("::1", 5683, 0, 0)),
    ],
)
def test_other_forms_of_a_literal_are_made_canonical(given: tuple, canonical: tuple) -> None:
    found = normalize(given)
    assert found == canonical and found is not given


@pytest.mark.parametrize("host", ["localhost", "1.2.3.4 x", "", "example.org"])
def test_a_name_or_nonsense_is_no_literal(host: str) -> None:
    assert normalize((host, 5683)) is None


def test_an_interned_address_holds_the_one_port_object_of_its_value() -> None:
    first = interned(("10.0.0.1", int("40123")))
    again = interned(("10.0.0.2", int("40123")))  # another int object of the same value
    assert again == ("10.0.0.2", 40123) and again[1] is first[1]
    assert interned(first) is first  # already so: the same tuple
    v6 = ("::1", 40123, 0, 0)
    assert interned(v6) is v6
