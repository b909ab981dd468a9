"""Sans-IO CoAP: RFC 7252 messages and endpoint, RFC 7959 block-wise, RFC 7641 observe,
RFC 6690 link format. No sockets, no asyncio, no clock: time comes in as ``now``."""
