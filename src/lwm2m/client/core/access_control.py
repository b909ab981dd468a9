"""LwM2M Access Control (object 2): which server may do what on which instance (LwM2M-TS-Core 1.2 §7.3, §E.3).

Each instance of object 2 governs one object instance (Object ID 0, Object
Instance ID 1): its ACL (2) maps Short Server IDs to rights bits, and its
Access Control Owner (3) is the server that manages it. An instance with
Object Instance ID 65535 governs the Create operation on its object.
:func:`allowed` answers, for a request of a server, whether the rules of
§7.3 let it through::

    tree.add(AccessControl(0, target_object=3, target_instance=0, acl={101: R | E}, owner=102))
    allowed(tree, 101, Path.parse("/3/0/4"), Operation.EXECUTE)  # True
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntFlag
from typing import TYPE_CHECKING, ClassVar

from lwm2m.client.instance import ObjectInstance
from lwm2m.model.path import Path

if TYPE_CHECKING:
    from lwm2m.client.objects import ObjectTree

ACCESS_CONTROL_OBJECT = 2
CREATE_INSTANCE = 65535  # Object Instance ID of the instance that governs Create (§7.3.1)
BOOTSTRAP_OWNER = 65535  # MAX_ID owner: the instance is managed in the bootstrap phase only (§E.3)
DEFAULT_ACL = 0  # ACL resource instance 0 holds the default rights (§E.3)
SERVER_OBJECT, SHORT_SERVER_ID = 1, 0
# Security and OSCORE: never reachable by an LwM2M server (§6.2.1, §E.1).
_NEVER = frozenset({0, 21})


class AccessRight(IntFlag):
    """The bits of an ACL resource instance (§E.3)."""

    NONE = 0
    READ = 1  # Read, Observe, Discover, Write-Attributes
    WRITE = 2
    EXECUTE = 4
    DELETE = 8
    CREATE = 16
    ALL = 31


R, W, E, D, C = (
    AccessRight.READ,
    AccessRight.WRITE,
    AccessRight.EXECUTE,
    AccessRight.DELETE,
    AccessRight.CREATE,
)


class Operation(Enum):
    """The Device Management operations access control decides on, with the right each needs."""

    READ = "read"
    OBSERVE = "observe"
    DISCOVER = "discover"
    WRITE_ATTRIBUTES = "write-attributes"
    WRITE = "write"
    EXECUTE = "execute"
    DELETE = "delete"
    CREATE = "create"

    @property
    def right(self) -> AccessRight:
        return _RIGHT[self]


_RIGHT = {
    Operation.READ: AccessRight.READ,
    Operation.OBSERVE: AccessRight.READ,
    Operation.DISCOVER: AccessRight.READ,
    Operation.WRITE_ATTRIBUTES: AccessRight.READ,
    Operation.WRITE: AccessRight.WRITE,
    Operation.EXECUTE: AccessRight.EXECUTE,
    Operation.DELETE: AccessRight.DELETE,
    Operation.CREATE: AccessRight.CREATE,
}


class AccessControl(ObjectInstance):
    """One instance of object 2: the ACL of ``/target_object/target_instance``.

    ``acl`` maps Short Server IDs (0 for the default) to :class:`AccessRight` bits.
    """

    object_id: ClassVar[int] = ACCESS_CONTROL_OBJECT

    OBJECT_ID, OBJECT_INSTANCE_ID, ACL, OWNER = 0, 1, 2, 3

    def __init__(
        self,
        instance_id: int = 0,
        *,
        target_object: int,
        target_instance: int,
        acl: Mapping[int, int] | None = None,
        owner: int = BOOTSTRAP_OWNER,
    ) -> None:
        if not 1 <= target_object <= 65534:
            raise ValueError(f"target_object {target_object}: expected 1..65534")
        if not 0 <= target_instance <= 65535:
            raise ValueError(f"target_instance {target_instance}: expected 0..65535")
        if not 0 <= owner <= 65535:
            raise ValueError(f"owner {owner}: a Short Server ID 0..65535")
        values: dict[int, object] = {
            self.OBJECT_ID: target_object,
            self.OBJECT_INSTANCE_ID: target_instance,
            self.OWNER: owner,
        }
        if acl:
            values[self.ACL] = {int(ssid): int(bits) for ssid, bits in sorted(acl.items())}
        super().__init__(instance_id, values)

    @property
    def target_object(self) -> int:
        return int(self.get(self.OBJECT_ID, 0))

    @property
    def target_instance(self) -> int:
        return int(self.get(self.OBJECT_INSTANCE_ID, 0))

    @property
    def owner(self) -> int:
        return int(self.get(self.OWNER, BOOTSTRAP_OWNER))

    @property
    def acl(self) -> dict[int, AccessRight]:
        acl = self.get(self.ACL) or {}
        return {ssid: AccessRight(bits & AccessRight.ALL) for ssid, bits in acl.items()}

    def rights(self, server_id: int) -> AccessRight:
        """The rights of ``server_id`` on the target: see :func:`instance_rights`."""
        return instance_rights(self, server_id)

    def grant(self, server_id: int, rights: int) -> None:
        """Set the ACL of ``server_id`` (0: the default) from the device side; NONE removes it."""
        acl = dict(self.get(self.ACL) or {})
        if rights:
            acl[server_id] = int(rights)
        else:
            acl.pop(server_id, None)
        if acl:
            self.set(self.ACL, dict(sorted(acl.items())))
        else:
            self.remove(self.ACL)


def instance_rights(aco: ObjectInstance, server_id: int) -> AccessRight:
    """The rights an Access Control instance gives ``server_id`` on its target (§7.3.1): its own
    ACL resource instance; else full rights for the owner; else the default ACL instance 0;
    else none. ``aco`` may be any instance of object 2 (one a bootstrap server created, too)."""
    acl = aco.get(AccessControl.ACL) or {}
    if server_id in acl:
        return AccessRight(int(acl[server_id]) & AccessRight.ALL)
    if server_id == aco.get(AccessControl.OWNER, BOOTSTRAP_OWNER):
        return AccessRight.ALL
    return AccessRight(int(acl.get(DEFAULT_ACL, 0)) & AccessRight.ALL)


def find(tree: ObjectTree, object_id: int, instance_id: int) -> ObjectInstance | None:
    """The Access Control instance that governs ``/object_id/instance_id`` (65535: Create), if any."""
    for inst in tree.instances(ACCESS_CONTROL_OBJECT):
        if (
            inst.get(AccessControl.OBJECT_ID) == object_id
            and inst.get(AccessControl.OBJECT_INSTANCE_ID) == instance_id
        ):
            return inst
    return None


def rights(tree: ObjectTree, server_id: int, object_id: int, instance_id: int) -> AccessRight:
    """The rights of ``server_id`` on ``/object_id/instance_id`` from its Access Control
    instance; none when there is no such instance (§7.3.1)."""
    aco = find(tree, object_id, instance_id)
    return instance_rights(aco, server_id) if aco is not None else AccessRight.NONE


def enforced(tree: ObjectTree) -> bool:
    """Whether access control applies: the client has object 2 and more than one server account.

    §7.3: with a single LwM2M Server account the server has full access and the
    Access Control object need not be instantiated.
    """
    return ACCESS_CONTROL_OBJECT in tree.objects and len(tree.instances(1)) > 1


def allowed(tree: ObjectTree, server_id: int, path: Path | str, operation: Operation | str) -> bool:
    """Whether the server with Short Server ID ``server_id`` may perform ``operation`` on ``path``
    (LwM2M-TS-Core 1.2 §7.3.1, §7.3.2).

    - Security (0) and OSCORE (21) are never reachable by an LwM2M server.
    - Discover is always allowed; without access control (:func:`enforced`) everything is.
    - Create on ``/oid`` needs the C right of the Access Control instance for
      ``(oid, 65535)``.
    - On the Access Control object itself any server may read; only an instance's
      owner may write it; servers neither create nor delete its instances.
    - On an object (no instance in the path), the operation is allowed when some
      instance grants it; the handler then leaves out the instances that do not (§7.3.2).
    - Otherwise the rights of the instance's Access Control instance decide; a Server (1)
      instance without one is its own server's (Read, Write, Execute).
    """
    path = Path.parse(path)
    operation = Operation(operation)
    ids = path.ids
    if not ids:
        # The root names no instance: a composite operation is decided path by path.
        return not enforced(tree)
    object_id = ids[0]
    if object_id in _NEVER:
        return False
    if operation is Operation.DISCOVER or not enforced(tree):
        return True
    if object_id == ACCESS_CONTROL_OBJECT:
        return _on_access_control(tree, server_id, ids, operation)
    if operation is Operation.CREATE:
        return bool(rights(tree, server_id, object_id, CREATE_INSTANCE) & AccessRight.CREATE)
    need = operation.right
    if len(ids) == 1:
        return any(_rights(tree, server_id, object_id, inst.id) & need for inst in tree.instances(object_id))
    return bool(_rights(tree, server_id, object_id, ids[1]) & need)


def _rights(tree: ObjectTree, server_id: int, object_id: int, instance_id: int) -> AccessRight:
    """:func:`rights`, and a server's own account: without an Access Control instance for it, the
    Server (1) instance of a Short Server ID is managed by that server (its lifetime, binding,
    Registration Update Trigger, §E.2), as a bootstrap server would have set its ACL."""
    aco = find(tree, object_id, instance_id)
    if aco is not None:
        return instance_rights(aco, server_id)
    if object_id == SERVER_OBJECT:
        inst = tree.instance(object_id, instance_id)
        if inst is not None and inst.get(SHORT_SERVER_ID) == server_id:
            return AccessRight.READ | AccessRight.WRITE | AccessRight.EXECUTE
    return AccessRight.NONE


def _on_access_control(tree: ObjectTree, server_id: int, ids: tuple[int, ...], operation: Operation) -> bool:
    if operation.right is AccessRight.READ:
        return True
    if operation in (Operation.CREATE, Operation.DELETE) or len(ids) < 2:
        return False
    inst = tree.instance(ACCESS_CONTROL_OBJECT, ids[1])
    return inst is not None and inst.get(AccessControl.OWNER) == server_id


def readable_instances(tree: ObjectTree, server_id: int, object_id: int) -> list[int]:
    """The instances of ``object_id`` a Read or Observe of the whole object may show ``server_id``
    (§7.3.2: the others are left out of the answer)."""
    return [
        inst.id
        for inst in tree.instances(object_id)
        if allowed(tree, server_id, Path.of(object_id, inst.id), Operation.READ)
    ]


def created(tree: ObjectTree, server_id: int, object_id: int, instance_id: int) -> AccessControl | None:
    """After ``server_id`` created ``/object_id/instance_id``: an Access Control instance owned
    by that server, so that it has full rights on what it made (§7.3.2, Create). Nothing when
    access control does not apply or the instance is already governed."""
    if not enforced(tree) or object_id in _NEVER or object_id == ACCESS_CONTROL_OBJECT:
        return None
    if find(tree, object_id, instance_id) is not None:
        return None
    aco = AccessControl(
        tree.objects[ACCESS_CONTROL_OBJECT].free_id(),
        target_object=object_id,
        target_instance=instance_id,
        owner=server_id,
    )
    tree.add(aco)
    return aco


def removed(tree: ObjectTree, object_id: int, instance_id: int) -> None:
    """After a Delete of ``/object_id/instance_id``: drop the Access Control instance that governed it."""
    aco = find(tree, object_id, instance_id)
    if aco is not None:
        tree.remove(ACCESS_CONTROL_OBJECT, aco.id)
