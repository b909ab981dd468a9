"""What the server tells its users, as typed events (past tense, frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from lwm2m.protocol.registration import Registration


@dataclass(frozen=True, slots=True)
class ClientRegistered:
    registration: Registration
    replaced: Registration | None = None  # a new Register for a known endpoint replaces it


@dataclass(frozen=True, slots=True)
class ClientUpdated:
    registration: Registration
    previous: Registration


@dataclass(frozen=True, slots=True)
class ClientDeregistered:
    registration: Registration


@dataclass(frozen=True, slots=True)
class RegistrationExpired:
    registration: Registration


ServerEvent = ClientRegistered | ClientUpdated | ClientDeregistered | RegistrationExpired
