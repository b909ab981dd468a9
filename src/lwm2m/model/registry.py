"""A set of object definitions, looked up by object ID (and version)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lwm2m.model.definition import ObjectDefinition, ResourceDefinition


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


class ObjectRegistry:
    """Object definitions by ID; several versions of one object may be held.

    ``get(id)`` answers the newest version unless a version is asked for.
    Adding a definition with an ID and version already held replaces it (user
    models override the bundled catalogue).
    """

    def __init__(self, definitions: Iterable[ObjectDefinition] = ()) -> None:
        self._by_id: dict[int, dict[str, ObjectDefinition]] = {}
        self._newest: dict[int, ObjectDefinition] = {}  # get(id) is on every decode: keep it a lookup
        for d in definitions:
            self.add(d)

    def add(self, definition: ObjectDefinition) -> None:
        versions = self._by_id.setdefault(definition.id, {})
        versions[definition.version] = definition
        self._newest[definition.id] = versions[max(versions, key=_version_key)]

    def update(self, definitions: Iterable[ObjectDefinition]) -> None:
        for d in definitions:
            self.add(d)

    def get(self, object_id: int, version: str | None = None) -> ObjectDefinition | None:
        if version is None:
            return self._newest.get(object_id)
        versions = self._by_id.get(object_id)
        return versions.get(version) if versions else None

    def versions(self, object_id: int) -> list[str]:
        return sorted(self._by_id.get(object_id, {}), key=_version_key)

    def resource(self, object_id: int, resource_id: int) -> ResourceDefinition | None:
        d = self.get(object_id)
        return d.resource(resource_id) if d is not None else None

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._by_id

    def __iter__(self) -> Iterator[ObjectDefinition]:
        """The newest version of every object, by ID."""
        for oid in sorted(self._by_id):
            d = self.get(oid)
            assert d is not None
            yield d

    def __len__(self) -> int:
        return len(self._by_id)

    def copy(self) -> ObjectRegistry:
        new = ObjectRegistry()
        for oid, versions in self._by_id.items():
            new._by_id[oid] = dict(versions)
        new._newest = dict(self._newest)
        return new
