"""Random ids of stored things that people type: firmware packages, campaigns."""

from __future__ import annotations

import secrets

__all__ = ["random_id"]


def random_id(nbytes: int) -> str:
    """``nbytes`` random bytes in URL-safe Base64, never beginning with ``-``: such an id goes
    in URLs and on command lines (``lwm2m campaign pause ID``), where a leading ``-`` reads as
    an option. One draw in 64 begins so and is drawn again."""
    while (token := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return token
