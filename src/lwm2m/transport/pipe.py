"""A child process and a stream to it: a connected pair of Unix sockets, one end kept by the
parent, the other inherited by the child (``pass_fds``) and opened there by its number.

The export worker (:mod:`lwm2m.export.handoff`) talks to the server over such a stream; a
Unix socket pair, unlike a pipe, carries both directions and reports the other end's death
as an end of stream at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping, Sequence

__all__ = ["open_inherited", "spawn_with_stream"]

BUFFER = 1 << 20  # bytes of socket buffer each way: a burst of batches waits in the kernel


async def spawn_with_stream(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, fd_flag: str = "--fd"
) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader, asyncio.StreamWriter]:
    """Start ``argv`` with ``fd_flag N`` appended, N the number of its end of a new socket pair;
    answer the process and the parent's end as a stream. The child's standard input is
    /dev/null; its output and errors are the parent's; it runs in a session of its own (the
    terminal's signals are the parent's to pass on)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (mine, theirs):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            fd_flag,
            str(theirs.fileno()),
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env=dict(env) if env is not None else None,
            # Its own session: a Ctrl-C at the terminal reaches the parent only, which stops it.
            start_new_session=True,
        )
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=mine, limit=BUFFER)
    return process, reader, writer


async def open_inherited(fd: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The child's end of :func:`spawn_with_stream`'s pair, by its number, as a stream."""
    sock = socket.socket(fileno=fd)
    os.set_blocking(sock.fileno(), False)
    return await asyncio.open_unix_connection(sock=sock, limit=BUFFER)
