"""A sorted set whose insert and delete stay cheap at millions of keys.

The keys live in a list of sorted chunks, each of at most ``2 * load`` keys, with
the largest key of each chunk beside it: a key is found by two bisections and
inserted or removed by moving at most one chunk's pointers, so a change costs
O(log n + load) instead of the O(n) of one flat sorted list, and walking the keys
from any point costs only what is walked. The memory store pages its
registrations from one of endpoint names (``GET /api/clients`` never sorts the
whole fleet) and finds expired registrations from one of (expiry, endpoint)
pairs (an expiry sweep reads only what expired).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar, cast

DEFAULT_LOAD = 512


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Ordered)


class SortedKeys(Generic[K]):
    """Keys of one totally ordered type, in order: strings in code-point order (which is also
    UTF-8 byte order, SQLite's BINARY collation), or tuples such as (expiry, name)."""

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 2:
            raise ValueError(f"load must be at least 2, got {load}")
        self._load = load
        self._chunks: list[list[K]] = []
        self._maxes: list[K] = []  # the last (largest) key of each chunk
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        probe = cast(K, key)  # any object: a TypeError below when it does not compare with the keys
        try:
            i = bisect_left(self._maxes, probe)
        except TypeError:  # not comparable with the keys: not one of them
            return False
        if i == len(self._maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, probe)
        return j < len(chunk) and bool(chunk[j] == key)

    def add(self, key: K) -> bool:
        """Insert ``key``; False (and nothing changed) when it is already there."""
        if not self._maxes:
            self._chunks.append([key])
            self._maxes.append(key)
            self._size = 1
            return True
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):  # beyond every key: the end of the last chunk
            i -= 1
            self._chunks[i].append(key)
            self._maxes[i] = key
        else:
            chunk = self._chunks[i]
            j = bisect_left(chunk, key)
            if j < len(chunk) and chunk[j] == key:
                return False
            insort(chunk, key, lo=j, hi=j)
        self._size += 1
        chunk = self._chunks[i]
        if len(chunk) > 2 * self._load:
            half = chunk[self._load :]
            del chunk[self._load :]
            self._maxes[i] = chunk[-1]
            self._chunks.insert(i + 1, half)
            self._maxes.insert(i + 1, half[-1])
        return True

    def discard(self, key: K) -> bool:
        """Remove ``key``; False when it was not there."""
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            return False
        del chunk[j]
        self._size -= 1
        if not chunk:
            del self._chunks[i]
            del self._maxes[i]
        elif j == len(chunk):
            self._maxes[i] = chunk[-1]
        return True

    def __iter__(self) -> Iterator[K]:
        """Every key, in order. Do not change the set while iterating."""
        for chunk in self._chunks:
            yield from chunk

    def after(self, key: K | None = None, *, start: K | None = None) -> Iterator[K]:
        """The keys greater than ``key`` (every key if None) and not less than ``start`` (no bound
        if None), in order.

        Do not change the set while iterating."""
        if start is None:
            if key is None:
                yield from self
                return
            start = key
        if key is not None and not key < start:
            i = bisect_right(self._maxes, key)
            find = bisect_right
            bound = key
        else:
            i = bisect_left(self._maxes, start)
            find = bisect_left
            bound = start
        if i == len(self._chunks):
            return
        chunk = self._chunks[i]
        yield from chunk[find(chunk, bound) :]
        for n in range(i + 1, len(self._chunks)):
            yield from self._chunks[n]
