"""Access Control (object 2): the rules of LwM2M-TS-Core 1.2 §7.3 as ``allowed`` applies them."""

from __future__ import annotations

import pytest
from tests.helpers.client_core import running, values

from lwm2m.client.core.access_control import (
    AccessControl,
    AccessRight,
    C,
    D,
    E,
    Operation,
    R,
    W,
    allowed,
    created,
    enforced,
    find,
    readable_instances,
    removed,
    rights,
)
from lwm2m.client.core.device import Device
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import ObjectTree
from lwm2m.model.catalogue import load_catalogue

A, B = 101, 102  # two servers' Short Server IDs


def tree_with(*servers: int, acl: bool = True) -> ObjectTree:
    tree = ObjectTree(load_catalogue())
    for i, ssid in enumerate(servers):
        tree.add(ServerAccount(i, short_server_id=ssid))
    tree.add(Device(manufacturer="ACME"))
    tree.add(ObjectInstance(0, {5700: 20.0}, object_id=3303))
    tree.add(ObjectInstance(1, {5700: 21.0}, object_id=3303))
    if acl:
        tree.declare(2)
    return tree


def test_single_server_may_do_everything() -> None:
    tree = tree_with(A)
    tree.add(AccessControl(0, target_object=3, target_instance=0, acl={B: R}, owner=B))
    assert not enforced(tree)
    for op in Operation:
        assert allowed(tree, A, "/3/0/4", op)
    assert allowed(tree, A, "/3303", Operation.CREATE)


def test_without_the_access_control_object_everything_is_allowed() -> None:
    tree = tree_with(A, B, acl=False)
    assert not enforced(tree)
    assert allowed(tree, B, "/3/0/4", Operation.EXECUTE)


def test_security_is_never_reachable() -> None:
    tree = tree_with(A)
    assert not allowed(tree, A, "/0/0", Operation.READ)
    assert not allowed(tree, A, "/21", Operation.DISCOVER)


def test_rights_from_the_acl_the_owner_and_the_default() -> None:
    tree = tree_with(A, B)
    tree.add(AccessControl(0, target_object=3, target_instance=0, acl={A: R | E}, owner=B))
    tree.add(AccessControl(1, target_object=3303, target_instance=0, acl={0: R}, owner=A))
    # Server A has its own ACL instance on /3/0; B, the owner without one, has full rights.
    assert rights(tree, A, 3, 0) == R | E
    assert rights(tree, B, 3, 0) == AccessRight.ALL
    assert allowed(tree, A, "/3/0/4", Operation.EXECUTE)
    assert allowed(tree, A, "/3/0/0", Operation.OBSERVE)
    assert not allowed(tree, A, "/3/0/13", Operation.WRITE)
    assert allowed(tree, B, "/3/0/13", Operation.WRITE)
    # /3303/0: A owns it; B gets the default ACL (instance 0): read only.
    assert allowed(tree, A, "/3303/0", Operation.DELETE)
    assert allowed(tree, B, "/3303/0/5700", Operation.READ)
    assert not allowed(tree, B, "/3303/0", Operation.DELETE)
    assert not allowed(tree, B, "/3303/0/5700", Operation.WRITE)
    # /3303/1 has no Access Control instance: nobody has rights on it (Discover aside).
    assert not allowed(tree, A, "/3303/1", Operation.READ)
    assert allowed(tree, A, "/3303/1", Operation.DISCOVER)
    # Object level: allowed when some instance allows; the Read then shows only those.
    assert allowed(tree, B, "/3303", Operation.READ)
    assert readable_instances(tree, B, 3303) == [0]
    assert allowed(tree, A, "/3", Operation.WRITE_ATTRIBUTES)
    assert not allowed(tree, A, "/3", Operation.WRITE)


def test_create_needs_the_c_right_of_instance_65535() -> None:
    tree = tree_with(A, B)
    tree.add(AccessControl(0, target_object=3303, target_instance=65535, acl={A: C}))
    assert allowed(tree, A, "/3303", Operation.CREATE)
    assert not allowed(tree, B, "/3303", Operation.CREATE)
    assert not allowed(tree, A, "/3", Operation.CREATE)
    # The server that created an instance owns it: full rights through a new ACO instance.
    aco = created(tree, A, 3303, 2)
    assert aco is not None and aco.owner == A and find(tree, 3303, 2) is aco
    assert allowed(tree, A, "/3303/2", Operation.DELETE)
    assert not allowed(tree, B, "/3303/2", Operation.READ)
    assert created(tree, A, 3303, 2) is None  # already governed
    removed(tree, 3303, 2)
    assert find(tree, 3303, 2) is None


def test_the_access_control_object_itself() -> None:
    tree = tree_with(A, B)
    tree.add(AccessControl(0, target_object=3, target_instance=0, acl={A: R}, owner=B))
    assert allowed(tree, A, "/2/0", Operation.READ)
    assert allowed(tree, A, "/2", Operation.OBSERVE)
    assert not allowed(tree, A, "/2/0/2", Operation.WRITE)  # only the owner manages it
    assert allowed(tree, B, "/2/0/2", Operation.WRITE)
    assert not allowed(tree, B, "/2/0", Operation.DELETE)
    assert not allowed(tree, B, "/2", Operation.CREATE)


def test_instances_made_by_a_bootstrap_server_count_too() -> None:
    tree = tree_with(A, B)
    generic = ObjectInstance(0, {0: 3, 1: 0, 2: {B: int(W)}, 3: A}, object_id=2)
    tree.add(generic)
    assert rights(tree, B, 3, 0) == W
    assert rights(tree, A, 3, 0) == AccessRight.ALL


def test_grant_and_checks() -> None:
    aco = AccessControl(0, target_object=3303, target_instance=0, owner=A)
    aco.grant(B, R | W)
    aco.grant(0, R)
    assert aco.acl == {0: R, B: R | W}
    aco.grant(B, AccessRight.NONE)
    aco.grant(0, 0)
    assert aco.get(AccessControl.ACL) is None
    assert aco.rights(B) == AccessRight.NONE and aco.rights(A) == AccessRight.ALL
    with pytest.raises(ValueError):
        AccessControl(0, target_object=0, target_instance=0)
    assert Operation("execute").right is E and Operation.DELETE.right is D


async def test_access_control_instances_read_over_the_wire() -> None:
    aco = AccessControl(0, target_object=3, target_instance=0, acl={1: R | W | E}, owner=1)
    async with running(aco) as (server, _):
        got = values(await server.read("core-test", "/2/0", format="tlv"))
    assert got == {"/2/0/0": 3, "/2/0/1": 0, "/2/0/2/1": 7, "/2/0/3": 1}


def test_each_server_manages_its_own_server_instance_unless_an_acl_says_otherwise() -> None:
    tree = tree_with(A, B)
    # /1/0 is A's account, /1/1 B's: without ACL instances each server reaches only its own.
    assert allowed(tree, A, "/1/0/1", Operation.WRITE)
    assert allowed(tree, A, "/1/0/8", Operation.EXECUTE)
    assert not allowed(tree, A, "/1/0", Operation.DELETE)
    assert not allowed(tree, B, "/1/0/1", Operation.READ)
    assert allowed(tree, B, "/1/1/1", Operation.READ)
    # An ACL instance for /1/0 decides instead.
    tree.add(AccessControl(0, target_object=1, target_instance=0, acl={B: R}, owner=B))
    assert allowed(tree, B, "/1/0/1", Operation.READ)
    assert not allowed(tree, A, "/1/0/1", Operation.READ)
