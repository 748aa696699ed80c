"""A client connection whose answers never make a pool thread wait on the client.

gunicorn writes an answer with ``sendall`` (and files with ``sendfile``)
from the pool thread that ran the request; to a client that stops reading,
that call blocks, and a few such clients hold every thread. Here a write
takes what the kernel accepts at once and holds the rest (the bytes
themselves, no copy, or the file's range on its own descriptor); the pull
worker's event loop writes what is held once the pool thread is done, and
drops a client that takes nothing for its write timeout
(danmaku_site.pullworker). Only past ``hold_limit`` bytes held in memory
does the thread wait, each wait bounded by the write timeout.

Reads in a pool thread (a body too large to be read on the loop) wait at
most ``read_timeout`` each: gthread makes the socket blocking before it
reads, and here "blocking" means that timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
from collections import deque
from dataclasses import dataclass

# Pieces of a file read into memory where sendfile cannot send it.
FILE_CHUNK_BYTES = 64 * 1024


@dataclass
class _FileRange:
    fd: int  # our own descriptor: the app closes its file when the answer ends
    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Listening:
    """What accepting from a listening socket needs, looked up once: in a
    connect storm the socket's own attributes (enum conversions, and for
    gunicorn's wrapper a ``__getattr__`` each) and ``getsockname`` cost a
    few microseconds a connection."""

    accept: object  # the socket's _accept: () -> (fd, address)
    family: int
    kind: int
    proto: int
    name: object  # getsockname()

    @classmethod
    def of(cls, listener) -> Listening:
        return cls(listener._accept, int(listener.family), int(listener.type), listener.proto, listener.getsockname())


class ClientSocket(socket.socket):
    read_timeout: float | None = None
    write_timeout: float | None = None
    hold_limit = 0

    @classmethod
    def adopt(cls, sock: socket.socket, *, read_timeout: float, write_timeout: float, hold_limit: int) -> ClientSocket:
        """``sock`` (as ``accept`` returned it) as a ClientSocket."""
        family, kind, proto = sock.family, sock.type, sock.proto
        return cls._made(cls(family, kind, proto, fileno=sock.detach()), read_timeout, write_timeout, hold_limit)

    @classmethod
    def accept_from(
        cls, listener: Listening, *, read_timeout: float, write_timeout: float, hold_limit: int
    ) -> tuple[ClientSocket, object]:
        """The next connection waiting on ``listener`` (and its address), as
        a ClientSocket from the start: in a connect storm every accept
        counts, and ``accept`` then ``adopt`` would make two socket objects.
        Raises as ``accept`` does (BlockingIOError when none waits)."""
        fd, address = listener.accept()
        made = cls(listener.family, listener.kind, listener.proto, fileno=fd)
        return cls._made(made, read_timeout, write_timeout, hold_limit), address

    @classmethod
    def _made(cls, adopted: ClientSocket, read_timeout: float, write_timeout: float, hold_limit: int) -> ClientSocket:
        adopted.read_timeout = read_timeout
        adopted.write_timeout = write_timeout
        adopted.hold_limit = hold_limit
        adopted._held = deque()
        adopted._held_bytes = 0
        return adopted

    # -- what gunicorn calls --------------------------------------------------

    def setblocking(self, flag: bool) -> None:
        if flag and self.read_timeout is not None:
            self.settimeout(self.read_timeout)
        else:
            super().setblocking(flag)

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        if not self._held:
            view = view[self._write_now(view) :]
            if not view:
                return
        # Bytes objects are immutable: holding a view of one is safe.
        self._hold_bytes(view if isinstance(data, bytes) else memoryview(bytes(view)))
        if self._held_bytes > self.hold_limit:
            # More than a connection may hold in memory (a streamed answer):
            # this thread waits for the client after all, within bounds.
            self._flush_waiting()

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        # gunicorn sends only files it can seek in (it checks first).
        fd = file.fileno()
        if count is None:
            count = os.fstat(fd).st_size - offset
        sent = 0
        if not self._held:
            try:
                sent = self._sendfile_now(fd, offset, count)
            except OSError as exc:
                # A file system without sendfile (as socket.sendfile does:
                # write the bytes instead when the first call fails).
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                return self._send_file_bytes(fd, offset, count)
        if sent < count:
            self._held.append(_FileRange(os.dup(fd), offset + sent, count - sent))
        return count

    def close(self) -> None:
        self.discard()
        super().close()

    # -- what the event loop calls ----------------------------------------------

    @property
    def holds_output(self) -> bool:
        return bool(self._held)

    def hold(self, buffers: list[bytes], skip: int) -> None:
        """Hold ``buffers`` but their first ``skip`` bytes, for ``flush``."""
        for buffer in buffers:
            if skip >= len(buffer):
                skip -= len(buffer)
                continue
            self._hold_bytes(memoryview(buffer)[skip:])
            skip = 0

    def flush(self) -> int:
        """Write what is held, as far as the socket takes it without waiting;
        the bytes written."""
        restore = self.gettimeout()
        if restore != 0.0:
            super().settimeout(0.0)
        try:
            return self._flush()
        finally:
            if restore != 0.0:
                super().settimeout(restore)

    def discard(self) -> None:
        """Forget what is held (and close the descriptors held for files)."""
        held = getattr(self, "_held", None)
        while held:
            item = held.popleft()
            if isinstance(item, _FileRange):
                os.close(item.fd)
        self._held_bytes = 0

    def abort(self) -> None:
        """Close with a reset: the kernel drops what it had not sent yet
        instead of trying to deliver it to a client that is not reading."""
        self.discard()
        with contextlib.suppress(OSError):
            self.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # -- inside -----------------------------------------------------------------

    def _hold_bytes(self, view: memoryview) -> None:
        self._held.append(view)
        self._held_bytes += len(view)

    def _write_now(self, view: memoryview) -> int:
        restore = self.gettimeout()
        super().settimeout(0.0)
        try:
            sent = 0
            while sent < len(view):
                try:
                    sent += super().send(view[sent:])
                except BlockingIOError:
                    break
            return sent
        finally:
            super().settimeout(restore)

    def _sendfile_now(self, fd: int, offset: int, count: int) -> int:
        restore = self.gettimeout()
        super().settimeout(0.0)
        try:
            sent = 0
            while sent < count:
                try:
                    written = os.sendfile(self.fileno(), fd, offset + sent, count - sent)
                except BlockingIOError:
                    break
                if written == 0:
                    return count  # the file is shorter than announced: nothing more to send
                sent += written
            return sent
        finally:
            super().settimeout(restore)

    def _send_file_bytes(self, fd: int, offset: int, count: int) -> int:
        end = offset + count
        while offset < end:
            chunk = os.pread(fd, min(FILE_CHUNK_BYTES, end - offset), offset)
            if not chunk:
                break
            self.sendall(chunk)
            offset += len(chunk)
        return count

    def _flush(self) -> int:
        written = 0
        held = self._held
        while held:
            item = held[0]
            try:
                if isinstance(item, _FileRange):
                    sent = os.sendfile(self.fileno(), item.fd, item.offset, item.count)
                    if sent == 0:
                        sent = item.count  # the file ended early
                    item.offset += sent
                    item.count -= sent
                    done = item.count <= 0
                    if done:
                        os.close(item.fd)
                else:
                    sent = super().send(item)
                    self._held_bytes -= sent
                    done = sent == len(item)
                    if not done:
                        held[0] = item[sent:]
            except BlockingIOError:
                break
            written += sent
            if done:
                held.popleft()
        return written

    def _flush_waiting(self) -> None:
        """In a pool thread: write what is held, waiting for the client at
        most ``write_timeout`` at a time; raise when it takes nothing that long."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_WRITE)
            while True:
                self.flush()
                if not self._held:
                    return
                if not selector.select(self.write_timeout):
                    self.discard()
                    raise BrokenPipeError(errno.EPIPE, f"the client read nothing for {self.write_timeout} s")
