"""Just enough HTTP/1.1 for the collector: requests read from a byte buffer (keep-alive and
pipelining), responses written as one byte string.

The collector answers small GETs and JSON POSTs at a high rate; a parser this small keeps
the per-request cost low and its limits explicit (request head size, Content-Length
required for a body, body size checked before it is read).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods and header names


class WireError(Exception):
    """A request that cannot be read: answered with `status`, then the connection closes."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""
    keep_alive: bool = True
    body_length: int = 0


def parse_head(buffer: bytearray, max_target: int, max_body: int) -> tuple[Request, int] | None:
    """The request whose head starts `buffer` and the bytes its head and body take, or None
    while more bytes are needed. WireError for what cannot be served."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise WireError(431 if buffer.find(b"\r\n") >= 0 else 414, "request head too large")
        return None
    if end > MAX_HEAD_BYTES:
        raise WireError(431, "request head too large")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise WireError(400, "malformed request line: expected METHOD TARGET HTTP/1.1") from None
    if not TOKEN.fullmatch(method) or not target:
        raise WireError(400, "malformed request line: expected METHOD TARGET HTTP/1.1")
    if len(target) > max_target:
        raise WireError(414, f"request target longer than {max_target} bytes")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise WireError(400, "only HTTP/1.0 and HTTP/1.1")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not TOKEN.fullmatch(name):
            raise WireError(400, "malformed header line")
        name = name.lower()
        if name == "content-length" and name in headers and headers[name] != value.strip():
            raise WireError(400, "two different Content-Length headers")
        headers[name] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    length = 0
    if "transfer-encoding" in headers or (method == "POST" and "content-length" not in headers):
        raise WireError(411, "Content-Length is required (no chunked bodies)")
    if "content-length" in headers:
        raw = headers["content-length"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise WireError(400, "Content-Length is not a number of bytes")
        length = int(raw)
        if length > max_body:
            raise WireError(413, f"body larger than {max_body} bytes")
    return Request(method, target, headers, keep_alive=keep_alive, body_length=length), end + 4 + length


def response(status: int, body: bytes, content_type: str = "application/json", keep_alive: bool = True,
             extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Access-Control-Allow-Origin: *",
            "Connection: " + ("keep-alive" if keep_alive else "close")]
    head += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
