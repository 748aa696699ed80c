"""harness.weaknet, the weak-network proxy, against small socket servers of
the test's own: bytes arrive whole and in order under latency and a cap, the
cap holds, a reset is a reset on both sides, stalls and outages hold traffic
and let it go, the same seed makes the same choices, and stop() leaves
nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time

import pytest

from harness.weaknet import Weakness, WeakNet, weak_net

# A test waits no longer than this for any one read.
READ_TIMEOUT_SECONDS = 10


class Server:
    """A 127.0.0.1 server running ``serve(conn)`` for each connection in a thread;
    what each ``serve`` raised or returned is kept in ``outcomes``."""

    def __init__(self, serve) -> None:
        self.serve = serve
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.outcomes: list[object] = []
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT_SECONDS)
        with conn:
            try:
                self.outcomes.append(self.serve(conn))
            except OSError as error:
                self.outcomes.append(error)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self.threads:
            thread.join(READ_TIMEOUT_SECONDS)


@contextlib.contextmanager
def server(serve):
    running = Server(serve)
    try:
        yield running
    finally:
        running.close()


def echo(conn: socket.socket) -> int:
    total = 0
    while data := conn.recv(65536):
        conn.sendall(data)
        total += len(data)
    return total


def answer(size: int):
    """A server that waits for one request byte, then sends ``size`` bytes and waits for the close."""

    def serve(conn: socket.socket) -> bytes:
        conn.recv(1)
        conn.sendall(b"a" * size)
        return conn.recv(1)

    return serve


def connect(net: WeakNet) -> socket.socket:
    sock = socket.create_connection(net.address, timeout=READ_TIMEOUT_SECONDS)
    sock.settimeout(READ_TIMEOUT_SECONDS)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = sock.recv(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def read_all(sock: socket.socket, into: bytearray) -> None:
    while data := sock.recv(65536):
        into += data


def ask(sock: socket.socket | None, net: WeakNet | None = None) -> bytes:
    """Send a byte and read the answer, on ``sock`` or a new connection to ``net``."""
    with contextlib.ExitStack() as stack:
        if sock is None:
            sock = stack.enter_context(connect(net))
        sock.sendall(b"?")
        return sock.recv(10)


def test_bytes_arrive_whole_and_in_order_under_latency_jitter_and_a_cap():
    payload = random.Random(1).randbytes(300_000)
    weakness = Weakness(rtt_ms=100, jitter_ms=80, rate_bytes_per_second=400_000, seed=3)
    with server(echo) as target, weak_net("127.0.0.1", target.port, weakness) as net, connect(net) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        back = receive(sock, len(payload))
        sender.join(READ_TIMEOUT_SECONDS)
    assert back == payload


def test_latency_is_half_the_round_trip_each_way():
    with server(echo) as target, weak_net("127.0.0.1", target.port, Weakness(rtt_ms=400)) as net, connect(net) as sock:
        started = time.monotonic()
        sock.sendall(b"ping")
        assert receive(sock, 4) == b"ping"
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.7


@pytest.mark.parametrize("rate", [64_000, 200_000])
def test_the_cap_holds_per_connection_and_direction(rate):
    size = rate * 3 // 2  # 1.5 s at the cap
    weakness = Weakness(rate_bytes_per_second=rate)
    with server(answer(size)) as target, weak_net("127.0.0.1", target.port, weakness) as net:
        socks = [connect(net) for _ in range(2)]
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"?")
        # Two connections at once each get the whole cap: it is theirs, not shared.
        results: list[float] = []

        def take(sock: socket.socket) -> None:
            assert len(receive(sock, size)) == size
            results.append(time.monotonic() - started)

        readers = [threading.Thread(target=take, args=(sock,)) for sock in socks]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(READ_TIMEOUT_SECONDS)
        for sock in socks:
            sock.close()
    assert len(results) == 2
    for elapsed in results:
        assert 1.5 * 0.9 <= elapsed <= 1.5 * 1.25, results


def test_a_reset_cuts_the_answer_midway_and_resets_both_sides():
    size = 10_000
    with server(answer(size)) as target, weak_net("127.0.0.1", target.port, Weakness(reset_probability=1.0)) as net:
        with connect(net) as sock:
            sock.sendall(b"?")
            got = bytearray()
            with pytest.raises(ConnectionResetError):
                read_all(sock, got)
        target.close()
        assert 0 < len(got) < size
        assert isinstance(target.outcomes[0], ConnectionResetError), target.outcomes
        assert net.stats().resets == 1


def test_a_stall_holds_the_answer_for_its_time():
    weakness = Weakness(stall_probability=1.0, stall_seconds=(0.6, 0.6))
    with server(echo) as target, weak_net("127.0.0.1", target.port, weakness) as net:
        with connect(net) as sock:
            started = time.monotonic()
            sock.sendall(b"ping")
            assert receive(sock, 4) == b"ping"
            assert time.monotonic() - started >= 0.6
        assert net.stats().stalls == 1


def test_a_stalling_outage_holds_traffic_then_lets_it_through_in_order():
    with server(echo) as target, weak_net("127.0.0.1", target.port) as net, connect(net) as sock:
        sock.sendall(b"before")
        assert receive(sock, 6) == b"before"
        back_at = net.outage(1.0, "stall")
        sock.sendall(b"during")
        with connect(net) as newcomer:
            newcomer.sendall(b"new")
            assert receive(sock, 6) == b"during"
            assert time.monotonic() >= back_at
            assert receive(newcomer, 3) == b"new"
        sock.sendall(b"after")
        assert receive(sock, 5) == b"after"


def test_a_resetting_outage_cuts_open_connections_refuses_new_ones_then_recovers():
    with server(echo) as target, weak_net("127.0.0.1", target.port) as net:
        with connect(net) as sock:
            sock.sendall(b"before")
            assert receive(sock, 6) == b"before"
            back_at = net.outage(1.0, "reset")
            with pytest.raises(ConnectionResetError):
                ask(sock)
        with pytest.raises(ConnectionResetError):
            ask(None, net)
        time.sleep(max(0.0, back_at - time.monotonic()) + 0.05)
        with connect(net) as sock:
            sock.sendall(b"after")
            assert receive(sock, 5) == b"after"
        stats = net.stats()
        assert (stats.cut, stats.refused) == (1, 1)


def resets_drawn(seed: int) -> list[bool]:
    """Which of 30 answers, one connection after another, the proxy reset."""
    drawn = []
    weakness = Weakness(reset_probability=0.5, seed=seed)
    with server(answer(100)) as target, weak_net("127.0.0.1", target.port, weakness) as net:
        for _ in range(30):
            with connect(net) as sock:
                sock.sendall(b"?")
                try:
                    drawn.append(len(receive(sock, 100)) < 100)
                except ConnectionResetError:
                    drawn.append(True)
    return drawn


def test_the_same_seed_makes_the_same_choices():
    first = resets_drawn(7)
    assert first == resets_drawn(7)
    assert first != resets_drawn(8)
    assert 5 < sum(first) < 25


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_leaves_no_thread_task_or_socket():
    before = open_descriptors()
    with server(echo) as target:
        net = WeakNet("127.0.0.1", target.port, Weakness(rtt_ms=200, rate_bytes_per_second=10_000))
        net.start()
        socks = [connect(net) for _ in range(50)]
        for sock in socks:
            sock.sendall(b"x" * 50_000)  # held in the proxy's queues and delays
        time.sleep(0.3)
        assert net.stats().open_connections == 50
        loop = net._loop
        net.stop()
        for sock in socks:
            sock.close()
    assert loop.is_closed()
    assert not asyncio.all_tasks(loop)
    assert not [thread for thread in threading.enumerate() if thread.name == "weaknet"]
    assert open_descriptors() == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(net.address, timeout=2)
