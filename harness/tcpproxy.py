"""A TCP proxy on 127.0.0.1 in front of a real service, to take it away.

``stop()`` closes the listener and every open connection (the service is
"down"); ``freeze()`` keeps connections open but forwards nothing (the
service "hangs"). ``start()`` after ``stop()`` listens again on the same port (the
service is "back"). The service itself is never touched, so a shared
PostgreSQL can be made unreachable for one test without harming others.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from harness.local import free_port

BUFFER = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._closed.clear()
        self._flowing.set()
        threading.Thread(target=self._accept, args=(listener,), name="tcpproxy-accept", daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._closed.set()
        if self._listener is not None:
            # close() alone leaves a thread blocked in accept() holding the
            # socket open, so the next client would still be accepted (and
            # cut); shutdown() wakes that accept() and the port refuses.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def freeze(self) -> None:
        """Keep accepting and holding connections, forward nothing."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.add((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), name="tcpproxy-pump", daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if not self._flowing.wait(0.05):
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    if not self._flowing.is_set():
                        break
                    data = sock.recv(BUFFER)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            # ValueError: a socket closed meanwhile (cut(), close()) has fd -1.
            return
        finally:
            with self._lock:
                self._pairs.discard((client, upstream))
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def tcp_proxy(target_host: str, target_port: int):
    proxy = TcpProxy(target_host, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
