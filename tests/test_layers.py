"""The layers of the design, checked by reading every module's imports (nothing is imported).

The table (``LAYERS``) is the design's, exactly: each package of ``src/lwm2m`` is in one layer
and imports only from the packages its row names (its own included):

    0  coap, tls, model     sans-IO CoAP, the sans-IO TLS engine, the object model
    1  codec                the content formats, over ``model``
    2  protocol             LwM2M operations, over ``coap``, ``model``, ``codec``
    3  transport            sockets and HTTP, over ``coap`` and ``tls``
    3  storage              the stores, over ``protocol`` and ``model``
    3  cluster              nodes sharing a fleet, over ``storage`` and ``protocol``
    4  server, client, bootstrap   the roles, over layers 0-3, never over one another
    5  fleet, export        over ``server`` and below
    5  web                  over layers 4-5 and below
    5  simulator            over ``client`` and below
    6  cli                  anything

Packages of the table that do not exist yet (``tls``, ``cluster``, ``fleet``, ``export``) hold
no modules, so their rows check nothing until they come. The top-level modules are not
layers: ``lwm2m.errors`` (the one exception tree) and the package ``lwm2m`` itself (its
``__init__``, the public names) may be imported from every layer; ``lwm2m.errors`` imports
nothing of the package.

Third-party packages per layer (``THIRD_PARTY``) are what each really uses, kept tight: a new
dependency of a layer is a decision, made by changing this table.

Only ``transport`` opens sockets or makes HTTP connections. Outside it, no module may

- import a module whose purpose is network I/O (``NETWORK_MODULES``: ``http.client``,
  ``urllib.request``, ``httpx``, ``socketserver`` ...), nor
- name an API that opens a socket or a connection (``SOCKET_CALLS``: ``socket.socket``,
  ``socket.create_connection``, asyncio's ``open_connection``, ``start_server``,
  ``create_server``, ``create_datagram_endpoint``, ``sock_connect`` ...), as an attribute or
  an imported name.

Importing ``socket`` or ``ssl`` for their types and errors (``socket.gaierror``,
``ssl.SSLContext`` handed to the transport) is allowed: that opens nothing. The one exception
is serving the REST API: uvicorn, the ASGI server (``THIRD_PARTY`` allows it in ``web`` and
``cli`` only), listens for HTTP on the socket it opens itself; the package hands it the web
layer's app and a host and port, never a socket.

Finally, no import circles: the graph of imports between the package's modules (every import
in a module, also those inside functions or under ``TYPE_CHECKING``) has no cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lwm2m"

_ROLES = {"server", "client", "bootstrap"}
_BELOW_ROLES = {"coap", "tls", "model", "codec", "protocol", "transport", "storage", "cluster"}
LAYERS: dict[str, int] = {
    "coap": 0,
    "tls": 0,
    "model": 0,
    "codec": 1,
    "protocol": 2,
    "transport": 3,
    "storage": 3,
    "cluster": 3,
    "server": 4,
    "client": 4,
    "bootstrap": 4,
    "fleet": 5,
    "export": 5,
    "web": 5,
    "simulator": 5,
    "cli": 6,
}
ALLOWED: dict[str, frozenset[str]] = {
    "coap": frozenset({"coap"}),
    "tls": frozenset({"tls"}),
    "model": frozenset({"model"}),
    "codec": frozenset({"codec", "model"}),
    "protocol": frozenset({"protocol", "coap", "model", "codec"}),
    "transport": frozenset({"transport", "coap", "tls"}),
    "storage": frozenset({"storage", "protocol", "model"}),
    "cluster": frozenset({"cluster", "storage", "protocol"}),
    "server": frozenset(_BELOW_ROLES | {"server"}),
    "client": frozenset(_BELOW_ROLES | {"client"}),
    "bootstrap": frozenset(_BELOW_ROLES | {"bootstrap"}),
    "fleet": frozenset(_BELOW_ROLES | {"server", "fleet"}),
    "export": frozenset(_BELOW_ROLES | {"server", "export"}),
    "web": frozenset(p for p in LAYERS if LAYERS[p] <= 5),
    "simulator": frozenset(_BELOW_ROLES | {"client", "simulator"}),
    "cli": frozenset(LAYERS),
}
TOP_LEVEL = {"lwm2m", "lwm2m.errors"}  # importable from every layer
THIRD_PARTY: dict[str, frozenset[str]] = {
    "coap": frozenset({"cryptography"}),  # OSCORE (RFC 8613)
    "tls": frozenset({"cryptography"}),
    "model": frozenset({"defusedxml"}),  # DDF files come from users
    "codec": frozenset({"cbor2", "msgspec"}),
    "protocol": frozenset(),
    "transport": frozenset({"cryptography", "uvloop"}),  # cryptography: the DTLS credentials' files
    "storage": frozenset({"msgspec", "redis"}),  # redis: the store of several nodes
    "cluster": frozenset({"redis"}),
    "server": frozenset({"msgspec"}),  # the events are frozen msgspec structs (server/events.py)
    "client": frozenset(),
    "bootstrap": frozenset(),
    "fleet": frozenset({"msgspec", "prometheus_client"}),  # campaign records; campaigns_metrics
    "export": frozenset({"prometheus_client", "aiomqtt", "msgspec"}),
    "web": frozenset({"starlette", "msgspec", "uvicorn"}),
    "simulator": frozenset(),
    "cli": frozenset({"click", "rich", "uvicorn"}),
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

NETWORK_MODULES = frozenset(
    {
        "http.client",
        "http.server",
        "urllib.request",
        "socketserver",
        "selectors",
        "ftplib",
        "smtplib",
        "xmlrpc.client",
        "httpx",
        "requests",
        "aiohttp",
        "urllib3",
        "websockets",
    }
)
SOCKET_CALLS = frozenset(
    {
        # socket
        "socket",
        "socketpair",
        "create_connection",
        "create_server",
        "fromfd",
        # asyncio streams and loop
        "open_connection",
        "open_unix_connection",
        "start_server",
        "start_unix_server",
        "create_unix_connection",
        "create_unix_server",
        "create_datagram_endpoint",
        "connect_accepted_socket",
        "sock_connect",
        "sock_accept",
        "sock_sendto",
        "sock_sendall",
        "sock_recv",
        "sock_recvfrom",
    }
)


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    """The dotted name of the module at ``path``: ``lwm2m.codec.link``, ``lwm2m.codec``."""
    parts = ("lwm2m", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _known() -> frozenset[str]:
    return frozenset(_name(p) for p in _modules())


def _package(module: str) -> str | None:
    """The layer package of a module name (``lwm2m.codec.link`` -> ``codec``); None at top level."""
    parts = module.split(".")
    if len(parts) < 2 or (len(parts) == 2 and f"lwm2m.{parts[1]}" not in _packages()):
        return None
    return parts[1]


@cache
def _packages() -> frozenset[str]:
    return frozenset(_name(p) for p in SRC.glob("*/__init__.py"))


def _imports(path: Path) -> Iterator[tuple[str, int, ast.AST]]:
    """(imported module, line, node) for every import in the module, resolved to absolute names.
    ``from P import name`` gives ``P.name`` when that is a module of the package, else ``P``."""
    me = _name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield (sub if sub in _known() else module), node.lineno, node


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SRC.parent)}:{line}"


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_layers(module: Path) -> None:
    package = _package(_name(module))
    if package is None:  # a top-level module
        if module.name == "errors.py":
            internal = [name for name, _, _ in _imports(module) if name.split(".")[0] == "lwm2m"]
            assert not internal, f"lwm2m/errors.py is the root of the tree, yet imports {internal}"
        return
    assert package in LAYERS, f"{package} is not a layer of the design"
    for name, line, _ in _imports(module):
        top = name.split(".")[0]
        where = f"{_where(module, line)} imports {name}"
        if top == "lwm2m":
            target = _package(name)
            if name in TOP_LEVEL or target is None:
                assert name in TOP_LEVEL, f"only {sorted(TOP_LEVEL)} are importable at top level: {where}"
                continue
            assert target in ALLOWED[package], f"layer rule broken: {where}"
        elif top not in STDLIB:
            assert top in THIRD_PARTY[package], f"{package} must not depend on {top}: {where}"


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_transport_opens_sockets_or_makes_http_connections(module: Path) -> None:
    if _package(_name(module)) == "transport":
        return
    tree = ast.parse(module.read_text(encoding="utf-8"), str(module))
    for name, line, node in _imports(module):
        assert name not in NETWORK_MODULES, (
            f"network I/O outside transport: {_where(module, line)} imports {name}"
        )
        if isinstance(node, ast.ImportFrom):
            opened = {a.name for a in node.names} & SOCKET_CALLS
            assert not opened, f"a socket outside transport: {_where(module, line)} imports {opened}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SOCKET_CALLS:
            pytest.fail(f"a socket outside transport: {_where(module, node.lineno)} uses .{node.attr}")


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        me = _name(path)
        edges = graph.setdefault(me, set())
        for name, _, _ in _imports(path):
            # ``import lwm2m.a.b`` needs lwm2m.a.b; an import of a name that is not a module of the
            # package (a class) needs the module that defines it, already resolved by _imports.
            if name != me and name in _known():
                edges.add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_circles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_package_is_a_layer_and_the_roles_exist() -> None:
    present = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert present <= set(LAYERS), present - set(LAYERS)
    needed = {"coap", "model", "codec", "protocol", "transport", "storage", "web", "simulator", "cli"}
    assert needed | _ROLES <= present
    assert set(ALLOWED) == set(THIRD_PARTY) == set(LAYERS)
    # Arrows point down: a package imports only from its own layer or below (cli: anything).
    for package, allowed in ALLOWED.items():
        assert all(LAYERS[other] <= LAYERS[package] for other in allowed), package
