"""Register, Update, De-register to and from CoAP (LwM2M-TS-Core 1.2 §6.2, LwM2M-TS-Transport 1.2 §6.2)."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import RegistrationError
from lwm2m.protocol.registration import (
    LIFETIME_CEILING,
    MAX_ENDPOINT_LENGTH,
    DeregisterRequest,
    ObjectLink,
    ObjectList,
    RegisterRequest,
    Registration,
    UpdateRequest,
    new_registration_id,
)


def register(
    *query: str, payload: bytes = b"</1/0>,</3/0>", ct: int | None = 40, path: str = "/rd"
) -> Message:
    msg = Message.build(
        Type.CON, Code.POST, uri_path=path, uri_query=query, content_format=ct, payload=payload
    )
    return Message.decode(msg.encode())  # what a server receives off the wire


def update(location: str, *query: str, payload: bytes = b"", ct: int | None = None) -> Message:
    return Message.build(
        Type.CON, Code.POST, uri_path=["rd", location], uri_query=query, content_format=ct, payload=payload
    )


# --- Register ------------------------------------------------------------------------------


def test_register_every_parameter() -> None:
    req = RegisterRequest.from_message(
        register(
            "ep=urn:imei:490154203237518",
            "lt=300",
            "lwm2m=1.1",
            "b=UT",
            "sms=+33612345678",
            "Q",
            payload=b"</1/0>,</3/0>,</3303/0>;ver=1.1",
        )
    )
    assert req.ep == "urn:imei:490154203237518"
    assert req.lt == 300
    assert req.lwm2m == "1.1"
    assert req.b == "UT"
    assert req.Q is True
    assert req.sms == "+33612345678"
    assert req.objects == (ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, 0, "1.1"))
    assert req.root_path == "/"
    assert req.content_formats == ()
    assert req.extra == ()


def test_register_defaults() -> None:
    # LwM2M-TS-Core 1.2 §6.2.1: lt 86400, binding U; no lwm2m parameter means a 1.0 client.
    req = RegisterRequest.from_message(register("ep=dev"))
    assert (req.lt, req.lwm2m, req.b, req.Q, req.sms) == (86400, "1.0", "U", False, None)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_register_accepts_versions(version: str) -> None:
    assert RegisterRequest.from_message(register("ep=dev", f"lwm2m={version}")).lwm2m == version


def test_registers_share_their_version_lifetime_and_address() -> None:
    # A million registrations hold one string per version and one int per lifetime, not a copy
    # each parsed from its query, and the socket address the server keeps for the client.
    message = register("ep=dev", "lwm2m=1.1", "lt=3600")
    first, second = (RegisterRequest.from_message(message) for _ in range(2))
    assert first.lwm2m is second.lwm2m and first.lwm2m == "1.1"
    assert first.lt is second.lt and first.lt == 3600
    addr = ("192.0.2.1", 5683 + int("1"))  # made at run time, as a socket reports it
    registration = Registration.from_request(first, addr, 0.0)
    assert registration.address is addr
    request = UpdateRequest.from_message(update("x"))
    moved = ("192.0.2.1", 6683 + int("1"))
    assert registration.updated(request, moved, 1.0).address is moved
    six = ("2001:db8::1", 5683, 0, 0)  # an IPv6 socket's address: host and port kept
    assert Registration.from_request(first, six, 0.0).address == ("2001:db8::1", 5683)


def test_register_quoted_version_of_early_10_clients() -> None:
    assert RegisterRequest.from_message(register("ep=dev", 'lwm2m="1.0"')).lwm2m == "1.0"


@pytest.mark.parametrize(
    ("binding", "letters", "queue"),
    [
        ("U", "U", False),
        ("UQ", "U", True),
        ("S", "S", False),
        ("SQ", "S", True),
        ("US", "US", False),
        ("UQS", "US", True),
    ],
)
def test_register_10_binding_carries_queue_mode(binding: str, letters: str, queue: bool) -> None:
    req = RegisterRequest.from_message(register("ep=dev", "lwm2m=1.0", f"b={binding}"))
    assert (req.b, req.Q) == (letters, queue)


def test_register_10_without_version_parameter_takes_uq() -> None:
    req = RegisterRequest.from_message(register("ep=dev", "b=UQ"))
    assert (req.lwm2m, req.b, req.Q) == ("1.0", "U", True)


@pytest.mark.parametrize(("version", "binding"), [("1.1", "T"), ("1.1", "N"), ("1.2", "M"), ("1.2", "UH")])
def test_register_newer_binding_letters(version: str, binding: str) -> None:
    assert RegisterRequest.from_message(register("ep=dev", f"lwm2m={version}", f"b={binding}")).b == binding


def test_register_unknown_parameters_are_kept() -> None:
    req = RegisterRequest.from_message(register("ep=dev", "apn=internet", "flag", "d=example.com"))
    assert req.extra == (("apn", "internet"), ("flag", None), ("d", "example.com"))


def test_register_endpoint_from_credentials() -> None:
    # LwM2M-TS-Core 1.2 §6.2.1: ep may be left out when the security session names the client.
    assert RegisterRequest.from_message(register("lt=60"), endpoint="cn-from-cert").ep == "cn-from-cert"
    assert RegisterRequest.from_message(register("ep=given"), endpoint="cn-from-cert").ep == "given"


# --- payload -------------------------------------------------------------------------------


def test_payload_spec_example_with_versions() -> None:
    objects = ObjectList.parse("</1/0>,</3/0>,</3303/0>;ver=1.1")
    assert objects.objects == (ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, 0, "1.1"))


def test_payload_objects_without_instances_and_object_versions() -> None:
    objects = ObjectList.parse("</1>;ver=1.1,</1/0>,</2>,</3/0>,</5>,</3303>;ver=1.1,</3303/0>,</3303/1>")
    assert [o.path for o in objects.objects] == [
        "/1",
        "/1/0",
        "/2",
        "/3/0",
        "/5",
        "/3303",
        "/3303/0",
        "/3303/1",
    ]
    reg = Registration("dev", "id", ("h", 1), objects=objects.objects)
    assert reg.object_ids == (1, 2, 3, 5, 3303)
    assert reg.supports(5) and not reg.supports(4)
    assert reg.object_version(3303) == "1.1"
    assert reg.object_version(3) is None
    assert reg.instances(3303) == (0, 1)
    assert reg.instances(5) == ()


def test_payload_root_with_content_formats() -> None:
    objects = ObjectList.parse('</>;rt="oma.lwm2m";ct="60 110 112 11543",</1/0>,</3/0>')
    assert objects.root_path == "/"
    assert objects.content_formats == (60, 110, 112, 11543)
    assert [o.path for o in objects.objects] == ["/1/0", "/3/0"]


def test_payload_root_with_one_content_format() -> None:
    assert ObjectList.parse("</>;ct=110,</1/0>").content_formats == (110,)


def test_payload_alternate_path() -> None:
    # LwM2M-TS-Core 1.2 §6.2.1: objects live under the alternate path the root link names.
    objects = ObjectList.parse(
        '</lwm2m>;rt="oma.lwm2m",</lwm2m/1/101>,</lwm2m/1/102>,</lwm2m/2/0>,</lwm2m/3/0>'
    )
    assert objects.root_path == "/lwm2m"
    assert [o.path for o in objects.objects] == ["/1/101", "/1/102", "/2/0", "/3/0"]
    assert ObjectList.parse(objects.to_payload()) == objects


def test_payload_whitespace_and_empty() -> None:
    assert ObjectList.parse(" </1/0> , </3/0>\n").objects == (ObjectLink(1, 0), ObjectLink(3, 0))
    assert ObjectList.parse(b"").objects == ()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"/1/0,/3/0", "payload is not link format"),
        (b"</1/0", "payload is not link format"),
        (b"\xff\xfe", "payload is not link format"),
        (b"</3/0/1>", "</3/0/1> is not an object or object instance path"),
        (b"</>,</3/0/1/2>", "</3/0/1/2> is not an object or object instance path"),
        (b"</abc>", "</abc> is not an object or object instance path"),
        (b"<3/0>", "<3/0> is not an object or object instance path"),
        (b"</65535/0>", "</65535/0> is not an object or object instance path"),
        (b"</03/0>", "</03/0> is not an object or object instance path"),
        (b"</3//0>", "</3//0> is not an object or object instance path"),
        (b"</3/0>;ver=one", "</3/0> has ver='one'; expected MAJOR.MINOR"),
        (b"</3/0>;ver", "</3/0> has ver=None; expected MAJOR.MINOR"),
        (b'</lwm2m>;rt="oma.lwm2m",</3/0>', "</3/0> is not under the alternate path /lwm2m"),
        (b'</5>;rt="oma.lwm2m",</5/3/0>', "bad alternate path </5>"),
        (b'</>;ct="x",</3/0>', "root link </>"),
        (b'</>,</a>;rt="oma.lwm2m"', "2 root links"),
    ],
)
def test_bad_payload(payload: bytes, message: str) -> None:
    with pytest.raises(RegistrationError) as info:
        RegisterRequest.from_message(register("ep=dev", payload=payload))
    assert message in str(info.value)
    assert info.value.code == Code.BAD_REQUEST


def test_payload_other_content_format_is_refused() -> None:
    with pytest.raises(RegistrationError, match=r"payload content format 110: expected 40 \(link format\)"):
        RegisterRequest.from_message(register("ep=dev", ct=110))


def test_payload_without_content_format_is_read_as_link_format() -> None:
    assert RegisterRequest.from_message(register("ep=dev", ct=None)).objects == (
        ObjectLink(1, 0),
        ObjectLink(3, 0),
    )


# --- bad parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ((), "Endpoint Client Name (ep) is missing"),
        (("lt=60",), "Endpoint Client Name (ep) is missing"),
        (("ep=",), "Endpoint Client Name (ep) is empty"),
        (("ep",), "Endpoint Client Name (ep) is empty"),
        (("ep=a", "ep=b"), "query parameter 'ep' given twice"),
        (("ep=a", "=x"), "query parameter '=x' has no name"),
        (("ep=a", "lt=0"), "Lifetime lt='0' is not a positive integer of seconds"),
        (("ep=a", "lt=-5"), "Lifetime lt='-5' is not a positive integer of seconds"),
        (("ep=a", "lt=1.5"), "Lifetime lt='1.5' is not a positive integer of seconds"),
        (("ep=a", "lt=abc"), "Lifetime lt='abc' is not a positive integer of seconds"),
        (("ep=a", "lt=٣"), "Lifetime lt='٣' is not a positive integer of seconds"),
        (("ep=a", "lt="), "Lifetime (lt) has no value"),
        (("ep=a", "lt"), "Lifetime (lt) has no value"),
        (("ep=a", "lwm2m="), "LwM2M Version (lwm2m) has no value"),
        (("ep=a", "b="), "Binding (b) has no value"),
        (("ep=a", "b=X"), "Binding b='X' is not valid for LwM2M 1.0: letters U, S, Q, each at most once"),
        (("ep=a", "b=UU"), "Binding b='UU' is not valid for LwM2M 1.0"),
        (("ep=a", "b=u"), "Binding b='u' is not valid"),
        (("ep=a", "b=Q"), "Binding b='Q' names no transport"),
        (("ep=a", "lwm2m=1.0", "b=T"), "Binding b='T' is not valid for LwM2M 1.0"),
        (("ep=a", "lwm2m=1.1", "b=M"), "Binding b='M' is not valid for LwM2M 1.1: letters U, T, S, N"),
        (
            ("ep=a", "lwm2m=1.1", "b=UQ"),
            "Binding b='UQ' is not valid for LwM2M 1.1: letters U, T, S, N, each at most once;"
            " in LwM2M 1.1 queue mode is the separate Q parameter",
        ),
        (("ep=a", "lwm2m=1.1", "Q=1"), "Queue Mode Q takes no value, got Q='1'"),
        (("ep=a", "sms="), "SMS Number (sms) has no value"),
    ],
)
def test_bad_parameters(query: tuple[str, ...], message: str) -> None:
    with pytest.raises(RegistrationError) as info:
        RegisterRequest.from_message(register(*query))
    assert message in str(info.value)
    assert info.value.code == Code.BAD_REQUEST


@pytest.mark.parametrize("version", ["2.0", "1.3", "1", "1.0.2", "v1.1"])
def test_unknown_version(version: str) -> None:
    with pytest.raises(RegistrationError) as info:
        RegisterRequest.from_message(register("ep=dev", f"lwm2m={version}"))
    assert (
        str(info.value) == f"LwM2M version lwm2m={version!r} is not supported: expected one of 1.0, 1.1, 1.2"
    )
    # LwM2M-TS-Transport 1.2 §6.2: versions that are not compatible get 4.12.
    assert info.value.code == Code.PRECONDITION_FAILED


def test_register_wrong_path_or_method() -> None:
    with pytest.raises(RegistrationError, match="Register goes to /rd, not /bs") as info:
        RegisterRequest.from_message(register("ep=dev", path="/bs"))
    assert info.value.code == Code.NOT_FOUND
    with pytest.raises(RegistrationError, match="Register uses POST") as info:
        RegisterRequest.from_message(Message.build(Type.CON, Code.GET, uri_path="/rd", uri_query=["ep=a"]))
    assert info.value.code == Code.METHOD_NOT_ALLOWED


def test_registration_error_is_a_value_error() -> None:
    assert issubclass(RegistrationError, ValueError)


# --- to_message and round trips ---------------------------------------------------------------


def test_register_to_message() -> None:
    req = RegisterRequest(
        ep="dev",
        lt=120,
        lwm2m="1.1",
        b="U",
        Q=True,
        sms="+123",
        objects=(ObjectLink(1, 0), ObjectLink(3303, 0, "1.1")),
        extra=(("apn", "x"),),
    )
    msg = req.to_message(mid=7, token=b"\x01\x02")
    assert (msg.type, msg.code, msg.mid, msg.token) == (Type.CON, Code.POST, 7, b"\x01\x02")
    assert msg.uri_path == ("rd",)
    assert msg.uri_query == ("ep=dev", "lt=120", "lwm2m=1.1", "b=U", "sms=+123", "Q", "apn=x")
    assert msg.content_format == 40
    assert msg.payload == b"</1/0>,</3303/0>;ver=1.1"


def test_register_10_queue_mode_goes_into_binding() -> None:
    msg = RegisterRequest(ep="dev", b="US", Q=True).to_message()
    assert msg.uri_query == ("ep=dev", "lt=86400", "lwm2m=1.0", "b=UQS")


@pytest.mark.parametrize(
    "req",
    [
        RegisterRequest(ep="dev"),
        RegisterRequest(ep="dev", lwm2m="1.0", b="US", Q=True),
        RegisterRequest(ep="dev", lwm2m="1.0", b="S", Q=True),
        RegisterRequest(ep="dev", lwm2m="1.2", b="UT", Q=True, sms="+1", extra=(("x", None),)),
        RegisterRequest(
            ep="urn:uuid:0c8d8a52-0f27-4c7f-9f4b-1b2c3d4e5f60",
            lwm2m="1.1",
            objects=(ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, None, "1.1"), ObjectLink(3303, 0)),
            root_path="/lwm2m",
            content_formats=(60, 110, 112),
        ),
    ],
)
def test_request_message_request(req: RegisterRequest) -> None:
    assert RegisterRequest.from_message(Message.decode(req.to_message().encode())) == req


@pytest.mark.parametrize(
    ("query", "payload"),
    [
        (("ep=dev", "lt=86400", "lwm2m=1.0", "b=U"), b"</1/0>,</3/0>"),
        (("ep=dev", "lt=60", "lwm2m=1.0", "b=UQ"), b"</1/0>,</3/0>,</3303/0>;ver=1.1"),
        (("ep=dev", "lt=60", "lwm2m=1.1", "b=U", "sms=+1", "Q"), b'</>;rt="oma.lwm2m";ct=110,</1/0>'),
        (
            ("ep=d", "lt=5", "lwm2m=1.2", "b=T", "apn=x"),
            b'</a>;rt="oma.lwm2m";ct="60 112",</a/1/0>,</a/3>;ver=1.2',
        ),
    ],
)
def test_message_request_message(query: tuple[str, ...], payload: bytes) -> None:
    msg = register(*query, payload=payload)
    again = RegisterRequest.from_message(msg).to_message()
    assert again.uri_path == msg.uri_path
    assert again.uri_query == msg.uri_query
    assert again.payload == msg.payload
    assert again.content_format == 40


# --- Update ---------------------------------------------------------------------------------


def test_update_every_parameter() -> None:
    req = UpdateRequest.from_message(
        update("Ab3_x", "lt=600", "b=U", "sms=+1", "Q", "apn=y", payload=b"</1/0>,</3/0>,</5/0>", ct=40)
    )
    assert req.location == "Ab3_x"
    assert (req.lt, req.b, req.sms, req.Q) == (600, "U", "+1", True)
    assert req.objects == ObjectList((ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(5, 0)))
    assert req.extra == (("apn", "y"),)


def test_update_empty_means_unchanged() -> None:
    req = UpdateRequest.from_message(update("id"))
    assert req == UpdateRequest("id")
    assert req.to_message().uri_query == ()
    assert req.to_message().payload == b""


def test_update_round_trip() -> None:
    req = UpdateRequest("id", lt=30, b="UT", Q=True, sms="+9", objects=ObjectList((ObjectLink(3, 0),)))
    msg = req.to_message()
    assert msg.uri_path == ("rd", "id")
    assert msg.uri_query == ("lt=30", "b=UT", "sms=+9", "Q")
    assert msg.content_format == 40
    assert UpdateRequest.from_message(Message.decode(msg.encode())) == req


def test_update_10_binding() -> None:
    req = UpdateRequest.from_message(update("id", "b=UQ"), lwm2m_version="1.0")
    assert (req.b, req.Q) == ("U", True)
    assert req.to_message(lwm2m_version="1.0").uri_query == ("b=UQ",)
    with pytest.raises(RegistrationError, match=r"in LwM2M 1\.1 queue mode is the separate Q parameter"):
        UpdateRequest.from_message(update("id", "b=UQ"), lwm2m_version="1.1")


@pytest.mark.parametrize(
    ("msg", "message", "code"),
    [
        (update("id", "lt=0"), "Lifetime lt='0' is not a positive integer of seconds", Code.BAD_REQUEST),
        (update("id", "b=Z"), "Binding b='Z' is not valid", Code.BAD_REQUEST),
        (
            update("id", payload=b"</3/0/1>"),
            "</3/0/1> is not an object or object instance path",
            Code.BAD_REQUEST,
        ),
        (update("id", payload=b"nope"), "payload is not link format", Code.BAD_REQUEST),
        (
            Message.build(Type.CON, Code.POST, uri_path="/rd"),
            "Update: /rd is not a registration",
            Code.NOT_FOUND,
        ),
        (Message.build(Type.CON, Code.POST, uri_path="/x/id"), "/x/id is not a registration", Code.NOT_FOUND),
        (Message.build(Type.CON, Code.PUT, uri_path="/rd/id"), "Update uses POST", Code.METHOD_NOT_ALLOWED),
    ],
)
def test_bad_update(msg: Message, message: str, code: Code) -> None:
    with pytest.raises(RegistrationError) as info:
        UpdateRequest.from_message(msg)
    assert message in str(info.value)
    assert info.value.code == code


# --- De-register ------------------------------------------------------------------------------


def test_deregister() -> None:
    msg = DeregisterRequest("xyz").to_message(mid=3)
    assert (msg.code, msg.uri_path, msg.payload) == (Code.DELETE, ("rd", "xyz"), b"")
    assert DeregisterRequest.from_message(Message.decode(msg.encode())) == DeregisterRequest("xyz")


def test_bad_deregister() -> None:
    with pytest.raises(RegistrationError, match="De-register: /rd is not a registration"):
        DeregisterRequest.from_message(Message.build(Type.CON, Code.DELETE, uri_path="/rd"))
    with pytest.raises(RegistrationError, match="De-register uses DELETE"):
        DeregisterRequest.from_message(Message.build(Type.CON, Code.GET, uri_path="/rd/x"))


# --- Registration ----------------------------------------------------------------------------


def make_registration(now: float = 1000.0) -> Registration:
    req = RegisterRequest.from_message(
        register("ep=dev", "lt=60", "lwm2m=1.1", "b=U", payload=b"</>;ct=110,</1/0>,</3/0>,</3303>;ver=1.1")
    )
    return Registration.from_request(req, ("192.0.2.1", 5683), now, registration_id="reg1")


def test_registration_from_request() -> None:
    reg = make_registration()
    assert reg.endpoint == "dev"
    assert reg.registration_id == "reg1"
    assert reg.location == "/rd/reg1"
    assert reg.address == ("192.0.2.1", 5683)
    assert (reg.lifetime, reg.lwm2m_version, reg.binding, reg.queue_mode) == (60, "1.1", "U", False)
    assert reg.content_formats == (110,)
    assert reg.object_ids == (1, 3, 3303)
    assert reg.registered_at == reg.last_update == 1000.0


def test_registration_expiry() -> None:
    reg = make_registration()
    assert reg.expires_at == 1060.0
    assert not reg.is_expired(1059.9)
    assert reg.is_expired(1060.0)
    assert not reg.is_expired(1065.0, grace=10)


def test_registration_updated() -> None:
    reg = make_registration()
    new = reg.updated(UpdateRequest("reg1"), ("192.0.2.9", 40000), 1050.0)
    assert new.address == ("192.0.2.9", 40000)
    assert new.last_update == 1050.0 and new.registered_at == 1000.0
    assert new.expires_at == 1110.0
    assert new.objects == reg.objects and new.content_formats == (110,)

    changed = new.updated(
        UpdateRequest("reg1", lt=10, b="UT", Q=True, sms="+5", objects=ObjectList((ObjectLink(6, 0),))),
        ("192.0.2.9", 40000),
        1100.0,
    )
    assert (changed.lifetime, changed.binding, changed.queue_mode, changed.sms) == (10, "UT", True, "+5")
    assert changed.object_ids == (6,)
    assert changed.content_formats == ()
    assert changed.expires_at == 1110.0


def test_registration_updated_10_binding_leaves_queue_mode() -> None:
    req = RegisterRequest.from_message(register("ep=dev", "b=UQ"))
    reg = Registration.from_request(req, ("h", 1), 0.0)
    assert reg.queue_mode is True
    update_ = UpdateRequest.from_message(update(reg.registration_id, "b=U"), lwm2m_version="1.0")
    assert reg.updated(update_, ("h", 1), 1.0).queue_mode is False
    # An Update without b keeps queue mode as it was.
    assert reg.updated(UpdateRequest(reg.registration_id, lt=5), ("h", 1), 1.0).queue_mode is True


def test_registration_dict_round_trip() -> None:
    import json

    reg = make_registration()
    reg = reg.updated(
        UpdateRequest("reg1", sms="+1", extra=(("apn", "a"), ("f", None))), ("::1", 5683), 1001.5
    )
    data = json.loads(json.dumps(reg.to_dict()))
    assert Registration.from_dict(data) == reg


def test_stored_object_links_are_parsed_once_and_their_cache_is_bounded() -> None:
    from lwm2m.protocol import registration as module

    stored = {"endpoint": "e", "registration_id": "r", "address": ["h", 1]}
    objects = [{"path": "/3/0"}, {"path": "/3303", "ver": "1.1"}, {"path": "/3303/1"}]
    first = Registration.from_dict({**stored, "objects": objects})
    again = Registration.from_dict({**stored, "objects": [dict(o) for o in objects]})
    assert first.objects == (ObjectLink(3, 0), ObjectLink(3303, None, "1.1"), ObjectLink(3303, 1))
    assert all(a is b for a, b in zip(first.objects, again.objects, strict=True))  # shared, frozen
    assert first.objects_json() == objects
    for i in range(module._STORED_LINKS_MAX + 10):
        Registration.from_dict({**stored, "objects": [{"path": f"/{i}/0"}]})
    assert len(module._STORED_LINKS) <= module._STORED_LINKS_MAX
    for bad in ("/70000/0", "/x", "/3/-1"):
        with pytest.raises((RegistrationError, ValueError)):
            Registration.from_dict({**stored, "objects": [{"path": bad}]})


def test_registration_ids_are_short_random_and_url_safe() -> None:
    ids = {new_registration_id() for _ in range(1000)}
    assert len(ids) == 1000
    for i in ids:
        assert 8 <= len(i) <= 16
        assert all(c.isalnum() or c in "-_" for c in i)
    assert Registration.from_request(RegisterRequest("a"), ("h", 1), 0.0).registration_id


# --- limits --------------------------------------------------------------------------------


def test_endpoint_names_are_bounded_in_utf8_bytes() -> None:
    longest = "é" * 127 + "a"  # 255 bytes of UTF-8, 128 characters
    assert RegisterRequest.from_message(register(f"ep={longest}")).ep == longest
    for name in ("é" * 128, "a" * 256, "x" * 5000):
        with pytest.raises(
            RegistrationError, match=r"ep\) has \d+ bytes; this server takes at most 255"
        ) as exc:
            RegisterRequest.from_message(register(f"ep={name}"))
        assert exc.value.code == Code.BAD_REQUEST
    with pytest.raises(RegistrationError, match="at most 8"):
        RegisterRequest.from_message(register("ep=nine-byte"), max_endpoint_length=8)
    assert MAX_ENDPOINT_LENGTH == 255


@pytest.mark.parametrize("lt", ["0", "000", "-1", "1.5", "1e3", "abc", " 60", "\uff16\uff10", "0x10"])
def test_lifetime_must_be_a_positive_integer(lt: str) -> None:
    with pytest.raises(RegistrationError, match="is not a positive integer") as exc:
        RegisterRequest.from_message(register("ep=a", f"lt={lt}"))
    assert exc.value.code == Code.BAD_REQUEST
    with pytest.raises(RegistrationError, match="is not a positive integer"):
        UpdateRequest.from_message(update("x", f"lt={lt}"))


def test_huge_lifetimes_are_read_without_error() -> None:
    assert RegisterRequest.from_message(register("ep=a", "lt=0060")).lt == 60
    for text in ("999999999999999999999999999999", "9" * 5000, str(LIFETIME_CEILING + 1)):
        assert RegisterRequest.from_message(register("ep=a", f"lt={text}")).lt == LIFETIME_CEILING
        assert UpdateRequest.from_message(update("x", f"lt={text}")).lt == LIFETIME_CEILING
    # A long bad value is cut short in the diagnostic.
    with pytest.raises(RegistrationError) as exc:
        RegisterRequest.from_message(register("ep=a", "lt=" + "x" * 3000))
    assert len(str(exc.value)) < 200


def test_link_count_is_capped() -> None:
    payload = ",".join(f"</3303/{i}>" for i in range(10)).encode()
    assert len(ObjectList.parse(payload, max_links=10).objects) == 10
    with pytest.raises(RegistrationError, match="payload has 11 links; this server takes at most 10"):
        ObjectList.parse(payload + b",</1/0>", max_links=10)
    # The root link counts too: it is a link of the payload.
    with pytest.raises(RegistrationError, match="11 links"):
        RegisterRequest.from_message(register("ep=a", payload=b'</>;rt="oma.lwm2m",' + payload), max_links=10)
    with pytest.raises(RegistrationError, match="11 links"):
        UpdateRequest.from_message(update("x", payload=payload + b",</1/0>", ct=40), max_links=10)
    assert UpdateRequest.from_message(update("x", payload=payload, ct=40), max_links=10).objects is not None
    # Without a cap, as before.
    assert len(ObjectList.parse(",".join(f"</1/{i}>" for i in range(3000))).objects) == 3000


def test_the_transport_reads_back_and_a_record_without_one_is_over_udp() -> None:
    from lwm2m.protocol.registration import Registration

    registration = Registration("ep", "r1", ("192.0.2.1", 40000), transport="tcp")
    stored = registration.to_dict()
    assert stored["transport"] == "tcp" and Registration.from_dict(stored) == registration
    del stored["transport"]  # written before the transport was kept
    assert Registration.from_dict(stored).transport == "udp"


def test_a_redis_registration_of_the_form_before_the_transport_reads_as_udp() -> None:
    import msgspec

    from lwm2m.protocol.registration import Registration
    from lwm2m.storage.redis_registrations import _registration, registration_bytes

    registration = Registration("ep", "r1", ("192.0.2.1", 40000), transport="tls", extra=(("a", "b"),))
    assert _registration(registration_bytes(registration)) == registration
    form = msgspec.msgpack.decode(registration_bytes(registration))
    old = msgspec.msgpack.encode([1, *form[1:-1]])
    assert _registration(old).transport == "udp"
    with pytest.raises(msgspec.DecodeError):
        _registration(msgspec.msgpack.encode([9, *form[1:]]))


def test_a_plain_object_list_is_written_as_the_link_format_serializer_writes_it() -> None:
    # The payload of every Register and Update is written without a Link per entry; fuzzed
    # against the serializer, with versions it cannot write plainly (then the serializer's).
    import random

    from lwm2m.codec.linkformat import serialize_links

    rng = random.Random(7)
    versions = [None, None, "1.0", "1.1", "2.12", "1.x", "1 .1", '1"2', ""]
    for _ in range(500):
        objects = tuple(
            ObjectLink(rng.randrange(65535), rng.choice([None, rng.randrange(65535)]), rng.choice(versions))
            for _ in range(rng.randrange(12))
        )
        root = rng.choice(["/", "/", "/lwm2m"])
        plain = ObjectList(objects, root, rng.choice([(), (), (112,), (112, 11543)]))
        assert plain.to_payload() == serialize_links(plain.links()).encode()
        if all(o.version in (None, "1.0", "1.1", "2.12") for o in objects):
            assert ObjectList.parse(plain.to_payload()) == plain
    two = ObjectList((ObjectLink(1, 0), ObjectLink(3303, None, "1.1")))
    assert two.to_payload() == b"</1/0>,</3303>;ver=1.1"
    announced = ObjectList(two.objects, content_formats=(112,))
    assert announced.to_payload() == b'</>;rt="oma.lwm2m";ct=112,</1/0>,</3303>;ver=1.1'
    assert ObjectList((), content_formats=(112,)).to_payload() == b'</>;rt="oma.lwm2m";ct=112'
