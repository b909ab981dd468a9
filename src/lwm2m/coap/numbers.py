"""CoAP registries as IntEnums: types, codes, option numbers (RFC 7252 §12, RFC 7959, RFC 7641)."""

from __future__ import annotations

from enum import IntEnum


class Type(IntEnum):
    """Message type (RFC 7252 §3)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


def _code(class_: int, detail: int) -> int:
    return (class_ << 5) | detail


class Code(IntEnum):
    """Method and response codes (RFC 7252 §12.1, RFC 7959 §2.9, RFC 8132)."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    IPATCH = 7

    CREATED = _code(2, 1)
    DELETED = _code(2, 2)
    VALID = _code(2, 3)
    CHANGED = _code(2, 4)
    CONTENT = _code(2, 5)
    CONTINUE = _code(2, 31)

    BAD_REQUEST = _code(4, 0)
    UNAUTHORIZED = _code(4, 1)
    BAD_OPTION = _code(4, 2)
    FORBIDDEN = _code(4, 3)
    NOT_FOUND = _code(4, 4)
    METHOD_NOT_ALLOWED = _code(4, 5)
    NOT_ACCEPTABLE = _code(4, 6)
    REQUEST_ENTITY_INCOMPLETE = _code(4, 8)
    CONFLICT = _code(4, 9)
    PRECONDITION_FAILED = _code(4, 12)
    REQUEST_ENTITY_TOO_LARGE = _code(4, 13)
    UNSUPPORTED_CONTENT_FORMAT = _code(4, 15)
    TOO_MANY_REQUESTS = _code(4, 29)  # RFC 8516

    INTERNAL_SERVER_ERROR = _code(5, 0)
    NOT_IMPLEMENTED = _code(5, 1)
    BAD_GATEWAY = _code(5, 2)
    SERVICE_UNAVAILABLE = _code(5, 3)
    GATEWAY_TIMEOUT = _code(5, 4)
    PROXYING_NOT_SUPPORTED = _code(5, 5)

    @property
    def class_(self) -> int:
        return self >> 5

    @property
    def detail(self) -> int:
        return self & 0x1F

    @property
    def is_request(self) -> bool:
        return 1 <= self <= 31

    @property
    def is_response(self) -> bool:
        return 64 <= self <= 191

    @property
    def is_success(self) -> bool:
        return self >> 5 == 2

    @property
    def dotted(self) -> str:
        """``2.05``: the number alone, as RFC 7252 §3 writes codes."""
        return code_str(self)

    def __str__(self) -> str:
        # What a user prints: "2.05 Content", "4.04 Not Found", "0.01 GET".
        return _TEXTS[self]

    def __format__(self, spec: str) -> str:
        # f"{code}" and f"{code:<20}" give the text; a numeric spec ("d", "x", "02x") the number.
        if spec and spec[-1] in "bcdoxXn":
            return int.__format__(self, spec)
        return format(_TEXTS[self], spec)


def code_str(code: int) -> str:
    """``2.05`` for 69; works for codes outside the enum too."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def _text(code: Code) -> str:
    if code.is_request:
        return f"{code_str(code)} {code.name}"  # methods by their RFC 7252 §5.8 names
    return f"{code_str(code)} {code.name.replace('_', ' ').title()}"


_TEXTS: dict[int, str] = {int(c): _text(c) for c in Code}
# Every code byte to its Code member, or the int itself where none is registered.
_MEMBERS: tuple[int, ...] = tuple(Code(i) if i in _TEXTS else i for i in range(256))


def code_text(code: int) -> str:
    """``4.00 Bad Request`` for 128: the number and, for a registered code, its name."""
    text = _TEXTS.get(code)
    return code_str(code) if text is None else text


def as_code(code: int) -> int:
    """The Code member for a registered code (which prints as ``2.05 Content``), else ``code``."""
    return _MEMBERS[code] if 0 <= code < 256 else code


def is_request_code(code: int) -> bool:
    return 1 <= code <= 31


def is_response_code(code: int) -> bool:
    return 64 <= code <= 191


class OptionNumber(IntEnum):
    """Option numbers (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 7967)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    NO_RESPONSE = 258

    @property
    def critical(self) -> bool:
        return bool(self & 1)


def is_critical(number: int) -> bool:
    """Odd option numbers are critical (RFC 7252 §5.4.6)."""
    return bool(number & 1)


class OptionFormat(IntEnum):
    EMPTY = 0
    OPAQUE = 1
    UINT = 2
    STRING = 3


OPTION_FORMATS: dict[int, OptionFormat] = {
    OptionNumber.IF_MATCH: OptionFormat.OPAQUE,
    OptionNumber.URI_HOST: OptionFormat.STRING,
    OptionNumber.ETAG: OptionFormat.OPAQUE,
    OptionNumber.IF_NONE_MATCH: OptionFormat.EMPTY,
    OptionNumber.OBSERVE: OptionFormat.UINT,
    OptionNumber.URI_PORT: OptionFormat.UINT,
    OptionNumber.LOCATION_PATH: OptionFormat.STRING,
    OptionNumber.URI_PATH: OptionFormat.STRING,
    OptionNumber.CONTENT_FORMAT: OptionFormat.UINT,
    OptionNumber.MAX_AGE: OptionFormat.UINT,
    OptionNumber.URI_QUERY: OptionFormat.STRING,
    OptionNumber.ACCEPT: OptionFormat.UINT,
    OptionNumber.LOCATION_QUERY: OptionFormat.STRING,
    OptionNumber.BLOCK2: OptionFormat.UINT,
    OptionNumber.BLOCK1: OptionFormat.UINT,
    OptionNumber.SIZE2: OptionFormat.UINT,
    OptionNumber.PROXY_URI: OptionFormat.STRING,
    OptionNumber.PROXY_SCHEME: OptionFormat.STRING,
    OptionNumber.SIZE1: OptionFormat.UINT,
    OptionNumber.NO_RESPONSE: OptionFormat.UINT,
}
