"""A sorted set whose insert and delete stay cheap at millions of keys.

The keys live in a list of sorted chunks, each of at most ``2 * load`` keys, with
the largest key of each chunk beside it: a key is found by two bisections and
inserted or removed by moving at most one chunk's pointers, so a change costs
O(log n + load) instead of the O(n) of one flat sorted list, and walking the keys
from any point costs only what is walked. The memory store pages its
registrations from one of endpoint names (``GET /api/clients`` never sorts the
whole fleet) and finds expired registrations from one of (expiry, endpoint)
pairs (an expiry sweep reads only what expired), ``TimedKeys``: the same chunks, each
a float array beside a list of names, so that a pair costs 16 bytes rather than a tuple
and a float object (~100 bytes with the allocator's rounding, at a million registrations
a tenth of a GB).
"""

from __future__ import annotations

from array import array
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


class TimedKeys:
    """(time, name) pairs in order, as ``SortedKeys[tuple[float, str]]`` keeps them (by time,
    then name), each pair held as a float in an array beside a name in a list."""

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 2:
            raise ValueError(f"load must be at least 2, got {load}")
        self._load = load
        self._times: list[array[float]] = []
        self._names: list[list[str]] = []
        self._maxes: list[tuple[float, str]] = []  # the last (largest) pair of each chunk
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _place(self, i: int, when: float, name: str) -> int:
        """Where (when, name) is, or would go, in chunk ``i``: among the pairs of an equal time
        (a Register storm gives many one time), by name."""
        times = self._times[i]
        lo = bisect_left(times, when)
        hi = bisect_right(times, when, lo)
        return bisect_left(self._names[i], name, lo, hi)

    def add(self, when: float, name: str) -> bool:
        """Insert the pair; False (and nothing changed) when it is already there."""
        when = float(when)  # as the array holds it (an int time is compared as its float)
        key = (when, name)
        if not self._maxes:
            self._times.append(array("d", (when,)))
            self._names.append([name])
            self._maxes.append(key)
            self._size = 1
            return True
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):  # beyond every pair: the end of the last chunk
            i -= 1
            self._times[i].append(when)
            self._names[i].append(name)
            self._maxes[i] = key
        else:
            times, names = self._times[i], self._names[i]
            j = self._place(i, when, name)
            if j < len(names) and times[j] == when and names[j] == name:
                return False
            times.insert(j, when)
            names.insert(j, name)
        self._size += 1
        names = self._names[i]
        if len(names) > 2 * self._load:
            times, load = self._times[i], self._load
            upper_times, upper_names = times[load:], names[load:]
            del times[load:]
            del names[load:]
            self._maxes[i] = (times[-1], names[-1])
            self._times.insert(i + 1, upper_times)
            self._names.insert(i + 1, upper_names)
            self._maxes.insert(i + 1, (upper_times[-1], upper_names[-1]))
        return True

    def discard(self, when: float, name: str) -> bool:
        """Remove the pair; False when it was not there."""
        when = float(when)
        i = bisect_left(self._maxes, (when, name))
        if i == len(self._maxes):
            return False
        times, names = self._times[i], self._names[i]
        j = self._place(i, when, name)
        if j == len(names) or times[j] != when or names[j] != name:
            return False
        del times[j]
        del names[j]
        self._size -= 1
        if not names:
            del self._times[i]
            del self._names[i]
            del self._maxes[i]
        elif j == len(names):
            self._maxes[i] = (times[-1], names[-1])
        return True

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        when, name = key
        if not isinstance(when, (int, float)) or not isinstance(name, str):
            return False
        when = float(when)
        i = bisect_left(self._maxes, (when, name))
        if i == len(self._maxes):
            return False
        j = self._place(i, when, name)
        return j < len(self._names[i]) and self._times[i][j] == when and self._names[i][j] == name

    def __iter__(self) -> Iterator[tuple[float, str]]:
        """Every pair, in order. Do not change the set while iterating."""
        for times, names in zip(self._times, self._names, strict=True):
            yield from zip(times, names, strict=True)
