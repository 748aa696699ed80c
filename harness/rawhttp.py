"""Whole HTTP/1.1 answers read off a raw socket, for tests that speak to a
server byte by byte (a kept-alive connection, pipelined requests)."""

from __future__ import annotations

import re
import socket

_CONTENT_LENGTH = re.compile(rb"\r\nContent-Length: (\d+)", re.IGNORECASE)


class AnswerReader:
    """Reads one answer at a time, framed by its Content-Length (a 304 has
    no body); bytes of the next answer stay for the next call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def answer(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, _ = self.buffer.partition(b"\r\n\r\n")
        length = 0 if head.split(b" ", 2)[1] == b"304" else int(_CONTENT_LENGTH.search(head)[1])
        end = len(head) + 4 + length
        while len(self.buffer) < end:
            self._read()
        answer, self.buffer = self.buffer[:end], self.buffer[end:]
        return answer

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk
