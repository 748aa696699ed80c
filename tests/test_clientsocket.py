"""A client connection's writes never make a pool thread wait on the client
(danmaku_site.clientsocket), over real TCP sockets on 127.0.0.1 with the
client's receive buffer small, as a client that stopped reading leaves it."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from danmaku_site.clientsocket import ClientSocket

# Far more than the kernel takes for a client that does not read.
LARGE = 4 * 1024 * 1024


@pytest.fixture
def pair() -> Iterator[tuple[ClientSocket, socket.socket]]:
    """(the server's ClientSocket in a pool thread's mode, the client)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        accepted, _ = listener.accept()
    server = ClientSocket.adopt(accepted, read_timeout=0.2, write_timeout=0.2, hold_limit=2 * LARGE)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server.setblocking(True)  # what gthread does before running a request
    client.settimeout(5)
    with contextlib.closing(client), contextlib.closing(server):
        yield server, client


def read_all(client: socket.socket, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        chunk = client.recv(65536)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def flush_while_reading(server: ClientSocket, client: socket.socket, count: int) -> bytes:
    """The client reads ``count`` bytes while the loop writes what is held."""
    received = []
    reader = threading.Thread(target=lambda: received.append(read_all(client, count)))
    reader.start()
    server.setblocking(False)  # the loop's mode
    deadline = time.monotonic() + 10
    while reader.is_alive() and time.monotonic() < deadline:
        server.flush()
        time.sleep(0.001)
    reader.join(timeout=5)
    return received[0]


def test_blocking_means_the_read_timeout(pair):
    server, _ = pair
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        server.recv(10)
    assert time.monotonic() - started < 2


@pytest.mark.timeout(30)
def test_sendall_to_a_client_that_does_not_read_returns_at_once_and_holds_the_rest(pair):
    server, client = pair
    data = bytes(range(256)) * (LARGE // 256)
    started = time.monotonic()
    server.sendall(b"head:")
    server.sendall(data)
    assert time.monotonic() - started < 1
    assert server.holds_output
    assert flush_while_reading(server, client, 5 + len(data)) == b"head:" + data
    assert not server.holds_output


@pytest.mark.timeout(30)
def test_sendfile_holds_a_range_of_the_file_not_its_bytes(pair, tmp_path):
    server, client = pair
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * (LARGE // 256)
    path.write_bytes(data)
    with path.open("rb") as file:
        assert server.sendfile(file, offset=10, count=len(data) - 20) == len(data) - 20
    # The app has closed its file: the held range has a descriptor of its own.
    assert server.holds_output
    assert flush_while_reading(server, client, len(data) - 20) == data[10:-10]


@pytest.mark.timeout(30)
def test_past_the_hold_limit_the_thread_waits_at_most_the_write_timeout(pair):
    server, _ = pair
    server.hold_limit = 1024
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        server.sendall(b"x" * LARGE)
    assert 0.2 <= time.monotonic() - started < 2
    assert not server.holds_output


def test_abort_resets_the_connection(pair):
    server, client = pair
    server.sendall(b"x" * LARGE)
    server.abort()
    with pytest.raises(ConnectionResetError):
        read_all(client, LARGE)


@pytest.mark.timeout(30)
def test_where_sendfile_is_refused_the_file_is_sent_as_bytes(pair, tmp_path, monkeypatch):
    server, client = pair
    path = tmp_path / "file.bin"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)

    def refused(*args):
        raise OSError(errno.EINVAL, "sendfile not supported here")

    monkeypatch.setattr(os, "sendfile", refused)
    with path.open("rb") as file:
        server.sendfile(file, offset=5, count=len(data) - 5)
    assert flush_while_reading(server, client, len(data) - 5) == data[5:]
