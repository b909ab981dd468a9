"""The process tree as /proc shows it: which processes a test's programs started."""

from __future__ import annotations

from pathlib import Path


def parents() -> dict[int, int]:
    """Every process id and its parent's, read from /proc."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid …": comm may hold spaces, so split after its closing parenthesis.
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return {child for child, parent in parents().items() if parent == pid}


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (children, their children, …)."""
    tree = parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in tree.items() if parent in frontier} - found
        found |= frontier
    return found
