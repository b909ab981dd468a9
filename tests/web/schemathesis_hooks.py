"""Hooks for the schemathesis run of ``test_openapi_conformance`` (``SCHEMATHESIS_HOOKS``).

The served document is used as it is, except that the endpoint parameter is narrowed to
the devices the test registered (``LWM2M_TEST_ENDPOINTS``), so that device operations reach
a device, and the device timeout is kept between 1 and 2 s (a device on loopback answers
at once; a shorter one is a 504 by design).

Some rules tie two parts of a request together, which a JSON schema cannot say and the
document says in words: a value's type comes from the object model of its path, a written
record lies under the path written, a format must be able to carry what is written (link
format carries no values, CBOR one), an attribute change names at least one attribute and
keeps pmin <= pmax, epmin < epmax, lt + 2*st < gt; a raw public key is a DER structure; an
OSCORE entry's sender and recipient IDs differ; a
bootstrap configuration's server accounts have distinct shortServerIds and instance IDs and
defaultMinPeriod <= defaultMaxPeriod, its ACL keys and owners are among its shortServerIds,
and it writes no account over the bootstrap account it names. A request that breaks one of
them is a 400 naming the rule; only those 400s are excused from the check that schema-valid
requests are accepted.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

from lwm2m.web.listing import encode_cursor

# The 400 messages of those rules (lwm2m.model.jsonform, lwm2m.web.app, the codecs, and the
# attributes' rules of LwM2M-TS-Core 1.2 §5.1.2).
CROSS_FIELD = re.compile(
    "|".join(
        (
            r"is not a resource value",
            r"is not an integer",
            r"is not a valid [\w ]+ value",  # e.g. "Unsigned Integer"
            r"Opaque values are base64",
            r"is not valid base64",
            r"invalid object link",  # a value of the "type" objlnk is "OBJECT:INSTANCE"
            r"writes one resource",
            r"the body needs",
            r"a partial update targets",
            r"is not under the request path",
            r"link format carries paths, not values",
            r"carries exactly one value",
            r"carries the value of the request path",
            r"carries a single resource or resource instance value",
            r"the opaque format carries bytes",
            r"give attributes as query parameters",
            r"must not be less than pmin",
            r"must be greater than epmin",
            r"must be less than gt",
            r"can only be set on a resource",
            r"the model types this resource",  # a given "type" must agree with the object model
            r"is neither Unix seconds nor an ISO 8601 date-time",  # a value of the "type" time
            r"the public key |a public key has",  # "rpk" holds DER, which a pattern cannot describe
            r"sender and recipient IDs must differ",  # OSCORE (RFC 8613 §3.3): two fields compared
            r"senderId and recipientId must differ",  # ... and in a bootstrap configuration
            # lwm2m.protocol.bootstrap_config: rules across the fields of a configuration
            r"is already used by servers\[",
            r"the same instance ID is given twice",
            r"is over defaultMaxPeriod",
            r"is not a shortServerId of servers\[\]",
            r"is not a server's shortServerId",
            r"is the device's bootstrap server account",
            # ... and two a pattern does not say: a binding letter given twice (a pattern would need
            # a back-reference), a PSK identity's limit in UTF-8 bytes (maxLength counts characters)
            r"each at most once",
            r"longer than \d+ bytes",
            # an IPv6 address in brackets: the pattern takes hex digits, colons and dots, and
            # urlsplit then checks the address itself
            r"does not appear to be an IPv4 or IPv6 address",
        )
    )
)
ENDPOINTS = os.environ.get("LWM2M_TEST_ENDPOINTS", "dev-1,dev-2").split(",")
DEVICE_TIMEOUT = float(os.environ.get("LWM2M_TEST_DEVICE_TIMEOUT", "2"))

# A cursor is opaque: a caller only passes back one the server gave (the document's format).
schemathesis.openapi.format("cursor", st.text(max_size=20).map(encode_cursor))


@schemathesis.hook
def before_load_schema(ctx: Any, raw_schema: dict[str, Any]) -> None:
    for template, operations in raw_schema.get("paths", {}).items():
        if not template.startswith("/api/clients/{ep}"):
            continue  # elsewhere (security, bootstrap) any endpoint name is valid
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "ep" and parameter["in"] == "path":
                    parameter["schema"] = {"type": "string", "enum": ENDPOINTS}


@schemathesis.hook
def map_query(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """A valid timeout becomes 1-2 s; an invalid one (negative, not a number) stays as drawn."""
    if query and isinstance(query.get("timeout"), int | float) and query["timeout"] > 0:
        query["timeout"] = min(max(float(query["timeout"]), 1.0), DEVICE_TIMEOUT)
    return query


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but these, which the document describes:

    - a 400 for breaking a cross-field rule (the document says them in words);
    - a 504 when the timeout given was under a second (the device may not answer that fast).
    """
    title = str(failure.title)
    if response.status_code == 400 and "Schema-valid request rejected" in title:
        return CROSS_FIELD.search(response.text) is None
    if response.status_code == 504:
        try:
            return float((case.query or {}).get("timeout", 60)) >= 1
        except ValueError:
            return True
    return True
