"""ClickHouse's HTTP interface over chDB, served by the process that owns the embedded warehouse.

What a ClickHouse server answers on its HTTP port, as far as BI tools, drivers and curl use
it (docs/warehouse.md): `GET`/`POST /` with the query in the URL or in the body (for an
INSERT, the data after it or in the body), `database`, `default_format`, `param_<name>`,
settings as URL parameters, request bodies compressed with Content-Encoding, `/ping`, the
X-ClickHouse-* headers clients read, and errors as `Code: N. DB::Exception: …` with the
X-ClickHouse-Exception-Code header. Each request is a session of its own (a new chDB
connection: its settings, readonly level and database last for that request alone), and
its statement passes guard.py before it runs. chDB calls are serialised by the owner's lock.
"""
from __future__ import annotations

import base64
import bz2
import hmac
import json
import logging
import lzma
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tracktor.warehouse import guard

log = logging.getLogger(__name__)

MAX_QUERY_BYTES = 1 << 20    # the statement's text (the data of an INSERT is not counted)
MAX_CONNECTIONS = 64         # past this a new connection is answered 503 and closed
IDLE_TIMEOUT_S = 60          # a connection silent this long is closed
# URL parameters that are not settings: ClickHouse's HTTP handler reads them itself (the
# last group are HTTP-only settings that mean nothing here: the whole answer is buffered).
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "quota_key", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "role", "stacktrace",
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "http_wait_end_of_query",
    "http_response_buffer_size", "add_http_cors_header"})
_STATUS = {  # ClickHouse's HTTP status for an exception code (the rest: 500)
    516: 403, 194: 401, 164: 403, 497: 403, 62: 400, 36: 400, 27: 400, 26: 400, 6: 400, 456: 400, 457: 400,
    115: 404, 60: 404, 46: 404, 47: 404, 81: 404, 50: 404, 48: 501, 159: 408, 202: 503, 108: 400}
_CONTENT_TYPES = (("JSON", "application/json; charset=UTF-8"), ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
                  ("TSV", "text/tab-separated-values; charset=UTF-8"), ("CSV", "text/csv; charset=UTF-8; header=present"),
                  ("Pretty", "text/plain; charset=UTF-8"), ("Vertical", "text/plain; charset=UTF-8"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NO_HANDLER = ("There is no handle {path}\n\nUse / or /ping for health checks.\n\n"
               "Send queries from your program with POST method or GET /?query=...\n")


class Closing(Exception):
    """The endpoint closed while a request was on its way."""


class ClickHouseError(Exception):
    """An answer in ClickHouse's shape: `Code: N. DB::Exception: message. (NAME)`."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code, self.name = code, name

    @classmethod
    def from_engine(cls, error: Exception) -> "ClickHouseError":
        text = str(error)
        text = text[text.find("Code: "):] if "Code: " in text else text
        code = re.match(r"Code: (\d+)\. (?:DB::Exception: )?", text)
        name = re.search(r"\(([A-Z_]+)\)(?: \(version [^)]*\))?\.?\s*$", text)
        # formatQuery's wrapper is ours, not the client's: its scope is left out of the message
        message = re.sub(r"\.? ?: In scope SELECT formatQuery\(.*", "", text[code.end():] if code else text, flags=re.S)
        message = re.sub(r"\.? \([A-Z_]+\)(?: \(version [^)]*\))?\.?\s*$", "", message.strip())
        return cls(int(code.group(1)) if code else 1001, name.group(1) if name else "STD_EXCEPTION", message)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _escaped(text: bytes) -> str:
    """`text` as the value of a String query parameter (TabSeparated escaping)."""
    return text.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").decode()


class Endpoint:
    """The HTTP interface of the warehouse whose engine (chDB connection string) is `engine`;
    `users` maps a user name to (password, readonly)."""

    def __init__(self, engine: str, mutex: threading.Lock, users: dict[str, tuple[str, bool]], host: str, port: int):
        import chdb  # here, not at import: only the owner loads the engine

        self.engine, self.mutex, self.users, self.connect = engine, mutex, users, chdb.connect
        self.sessions, self.idle, self.closed = 0, threading.Condition(mutex), False
        with mutex:
            conn = self.connect(engine)
            try:
                self.version, self.timezone = conn.query("SELECT version(), timezone()",
                                                         "TabSeparatedRaw").bytes().decode().split()
                self.outward = guard.outward_names(conn)
            finally:
                conn.close()
        self.display_name = socket.gethostname()
        self.spool = tempfile.mkdtemp(prefix="tracktor-http-")  # mode 0700: the INSERT bodies on their way in
        self.server = _Server((host, port), _Handler, self)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.1,), name="warehouse-http", daemon=True).start()

    def close(self) -> None:
        """Stop serving, and return once no request has a chDB session open (each holds the
        engine open: the next owner could not open it), or after IDLE_TIMEOUT_S."""
        self.server.shutdown()
        self.server.server_close()
        with self.idle:
            self.closed = True
            self.idle.wait_for(lambda: not self.sessions, IDLE_TIMEOUT_S)
        shutil.rmtree(self.spool, ignore_errors=True)

    @contextmanager
    def _engine(self):
        """The owner's lock, while the endpoint is open: once it is closed a request stops
        (Closing: its connection closes unanswered, so its client looks for the next owner)."""
        with self.mutex:
            if self.closed:
                raise Closing
            yield

    def authenticate(self, user: str, password: str) -> bool:
        """Whether `user` is readonly, once its password matches (compared in constant time,
        known user or not); else AUTHENTICATION_FAILED."""
        known, readonly = self.users.get(user, ("", True))
        matches = hmac.compare_digest(password.encode(), known.encode())
        if not (matches and user in self.users):
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", f"{user}: Authentication failed: password is "
                                                                "incorrect, or there is no user with such name")
        return readonly

    def execute(self, user: str, reader: bool, readonly: bool, text: bytes, rest: Iterator[bytes],
                params: dict[str, str], settings: dict[str, str], database: str | None,
                fmt: str) -> tuple[bytes, dict, str | None]:
        """(answer, summary, its format or None) of the request's statement `text` (its first
        bytes: the rest of the body follows in `rest`), by the reader's rules or the writer's,
        in a session that is readonly=2 or not."""
        head, data_at = guard.split_insert(text)
        try:
            head_param = _escaped(head)
        except UnicodeDecodeError:
            raise ClickHouseError(62, "SYNTAX_ERROR", "The statement is not valid UTF-8") from None
        started = time.monotonic_ns()
        spooled = None
        with self._engine():
            conn = self.connect(self.engine)
            self.sessions += 1
        try:
            with self._engine():
                if readonly:
                    conn.query("SET readonly = 2", "TabSeparated")
                for name, value in settings.items():
                    conn.query(f"SET {name} = {_quote(value)}", "TabSeparated")
                if database:
                    conn.query(f"USE `{database}`", "TabSeparated")
                formatted = conn.query("SELECT formatQuery({q:String})", "TabSeparatedRaw",
                                       params={"q": head_param}).bytes()
                ast = conn.query(b"EXPLAIN AST " + formatted, "TabSeparatedRaw", params=params).bytes().decode()
            guard.check(ast, formatted, user, reader, self.outward)
            statement = formatted
            if data_at is not None:
                spooled = self._spool(text[data_at:], rest)
                statement = _reading(formatted, spooled)
            with self._engine():
                result = conn.query(statement, fmt, params=params)
        except RuntimeError as e:  # chDB's errors (ChdbError is one)
            raise ClickHouseError.from_engine(e) from None
        finally:
            if spooled:
                os.unlink(spooled)
            with self.idle:
                conn.close()
                self.sessions -= 1
                self.idle.notify_all()
        body = result.bytes() or b""
        rows, read = result.rows_read(), result.bytes_read()
        writes = ast.startswith("InsertQuery")
        summary = {"read_rows": str(0 if writes else rows), "read_bytes": str(0 if writes else read),
                   "written_rows": str(rows if writes else 0), "written_bytes": str(read if writes else 0),
                   "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(body)),
                   "elapsed_ns": str(time.monotonic_ns() - started)}
        declared = re.findall(rb"(?m)^FORMAT (\w+)$", formatted)
        out_format = (declared[-1].decode() if declared else fmt) if ast.startswith(guard.RESULT_STATEMENTS) else None
        return body, summary, out_format

    def _spool(self, first: bytes, rest: Iterator[bytes]) -> str:
        """A file of our own with an INSERT's data (`first`, then `rest`): chDB reads an
        insert's data only from its query text or from a file."""
        fd, path = tempfile.mkstemp(dir=self.spool, suffix=".data")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(first)
                for chunk in rest:
                    f.write(chunk)
        except BaseException:  # the body broke off, or would not decompress
            os.unlink(path)
            raise
        return path


def _reading(formatted: bytes, path: str) -> bytes:
    """The formatted INSERT `formatted` (… [SETTINGS …] FORMAT name) reading its data from `path`."""
    at = re.search(rb"(?:\nSETTINGS .*?)?[ \n]FORMAT \w+\s*$", formatted, re.S).start()
    return formatted[:at] + b" FROM INFILE " + _quote(path).encode() + formatted[at:]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, endpoint: Endpoint):
        self.endpoint = endpoint
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            body = b"Code: 202. DB::Exception: Too many simultaneous connections. (TOO_MANY_SIMULTANEOUS_QUERIES)\n"
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nX-ClickHouse-Exception-Code: 202\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _decompressor(encoding: str):
    """A new incremental decompressor for a Content-Encoding (each has .eof and .unused_data)."""
    if encoding == "gzip":
        return zlib.decompressobj(31)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding == "xz":
        return lzma.LZMADecompressor()
    if encoding in ("bz2", "bzip2"):
        return bz2.BZ2Decompressor()
    if encoding == "zstd":
        from backports import zstd
        return zstd.ZstdDecompressor()
    if encoding == "lz4":
        import lz4.frame
        return lz4.frame.LZ4FrameDecompressor()
    raise ClickHouseError(48, "NOT_IMPLEMENTED", f"Content-Encoding {encoding} is not supported here "
                                                 "(gzip, deflate, xz, bz2, zstd and lz4 are)")


def _pending(decoder) -> bool:
    """Whether the decoder has more output for the input it was given (zlib keeps that
    input in unconsumed_tail; the others say needs_input)."""
    if decoder.eof:
        return False
    return bool(decoder.unconsumed_tail) if hasattr(decoder, "unconsumed_tail") else not decoder.needs_input


def _decoded(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """The body's bytes with its Content-Encoding undone (concatenated frames included), in
    pieces of at most 1 MiB whatever a compressed chunk expands to."""
    if encoding in ("", "identity"):
        yield from chunks
        return
    piece = 1 << 20
    decoder = _decompressor(encoding)
    try:
        for chunk in chunks:
            while chunk:
                yield decoder.decompress(chunk, piece)
                while _pending(decoder):
                    yield decoder.decompress(getattr(decoder, "unconsumed_tail", b""), piece)
                chunk, decoder = (decoder.unused_data, _decompressor(encoding)) if decoder.eof else (b"", decoder)
    except (zlib.error, lzma.LZMAError, OSError, RuntimeError, ValueError) as e:
        raise ClickHouseError(354, "CANNOT_DECOMPRESS", f"Cannot decompress the request body ({encoding}): {e}") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait for an ACK between
    server_version, sys_version = "ClickHouse", ""  # X-ClickHouse-Server-Display-Name names this one
    anonymous = False  # whether the request being answered came with no credentials

    def log_message(self, fmt, *args):
        log.debug("warehouse http: " + fmt, *args)

    def do_GET(self):
        self._serve(post=False)

    def do_POST(self):
        self._serve(post=True)

    def do_HEAD(self):
        self._answer(200 if urlsplit(self.path).path in ("/", "/ping") else 404, b"", {}, head_only=True)

    def _serve(self, post: bool) -> None:
        endpoint: Endpoint = self.server.endpoint
        url = urlsplit(self.path)
        # X-ClickHouse-Database and X-ClickHouse-Format stand for the database and default_format parameters
        params = {"database": self.headers.get("X-ClickHouse-Database", ""),
                  "default_format": self.headers.get("X-ClickHouse-Format", ""),
                  **dict(parse_qsl(url.query, keep_blank_values=True))}
        query_id = params.get("query_id") or self.headers.get("X-ClickHouse-Query-Id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id}
        if url.path in ("/ping", "/replicas_status"):
            return self._answer(200, b"Ok.\n", headers)
        if url.path != "/":
            return self._answer(404, _NO_HANDLER.format(path=url.path).encode(), headers, close=post)
        try:
            body = self._body()
            if not post and not params.get("query"):
                return self._answer(200, b"Ok.\n", headers)
            user, password = self._credentials(params)
            reader = endpoint.authenticate(user, password)
            for name in ("compress", "decompress"):
                if params.get(name, "0") not in ("0", "false"):
                    raise ClickHouseError(48, "NOT_IMPLEMENTED", f"{name}=1 (ClickHouse's own compressed blocks) "
                                          "is not supported here: use HTTP compression (Content-Encoding)")
            if self.headers.get_content_type().startswith("multipart/"):
                raise ClickHouseError(48, "NOT_IMPLEMENTED", "external data (multipart/form-data) is not supported here")
            settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
            for name in settings:
                guard.check_setting(user, name)
            for name in ("database", "default_format"):
                if params.get(name) and not _IDENTIFIER.fullmatch(params[name]):
                    raise ClickHouseError(36, "BAD_ARGUMENTS", f"Invalid {name} {params[name]!r}")
            text, rest = self._statement(params.get("query", "").encode(), body)
            query_params = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
            out, summary, fmt = endpoint.execute(  # a GET is readonly=2, as ClickHouse makes it
                user, reader, reader or not post, text, rest, query_params, settings, params.get("database"),
                params.get("default_format") or "TabSeparated")
        except (ClickHouseError, guard.Refused) as e:
            return self._error(e, headers)
        except Closing:
            self.close_connection = True
            return
        except Exception as e:  # a bug of ours: the client still gets an answer, the owner goes on
            log.exception("warehouse http: %s", self.path)
            return self._error(ClickHouseError(1001, "STD_EXCEPTION", f"{type(e).__name__}: {e}"), headers)
        headers["X-ClickHouse-Summary"] = json.dumps(summary, separators=(",", ":"))
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = next((t for prefix, t in _CONTENT_TYPES if fmt.startswith(prefix)),
                                           "application/octet-stream")
        self._answer(200, out, headers)

    def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
        """(user, password) as ClickHouse takes them: HTTP basic auth, the X-ClickHouse-User and
        X-ClickHouse-Key headers, or the user and password URL parameters; else the default user."""
        auth, header_user = self.headers.get("Authorization"), self.headers.get("X-ClickHouse-User")
        self.anonymous = not (auth or header_user or "user" in params)
        if auth:
            scheme, _, value = auth.partition(" ")
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except ValueError:
                user = password = ""
            if scheme.lower() != "basic" or not user:
                raise ClickHouseError(516, "AUTHENTICATION_FAILED", "Authentication failed: only HTTP basic "
                                                                    "authentication is supported here")
            return user, password
        if header_user:
            return header_user, self.headers.get("X-ClickHouse-Key", "")
        return params.get("user") or "default", params.get("password", "")

    def _body(self) -> Iterator[bytes]:
        """The request body's bytes, de-chunked and decompressed, as they arrive."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._chunked()
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise ClickHouseError(36, "BAD_ARGUMENTS", "Invalid Content-Length") from None
            raw = self._sized(length)
        return _decoded(raw, self.headers.get("Content-Encoding", "").strip().lower())

    def _sized(self, length: int) -> Iterator[bytes]:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                raise ClickHouseError(33, "CANNOT_READ_ALL_DATA", "The request body ended early")
            length -= len(chunk)
            yield chunk

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ClickHouseError(36, "BAD_ARGUMENTS", "Invalid chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return
            yield from self._sized(size)
            self.rfile.readline(3)

    def _statement(self, query: bytes, body: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
        """(the text ClickHouse parses: the `query` parameter, a newline and the body's first
        bytes; the rest of the body). Past MAX_QUERY_BYTES the rest must be an INSERT's data."""
        first = bytearray(query + b"\n" if query else b"")
        for chunk in body:
            first += chunk
            if len(first) > MAX_QUERY_BYTES:
                break
        text = bytes(first).rstrip(b"\n") if query and len(first) == len(query) + 1 else bytes(first)
        if len(text) > MAX_QUERY_BYTES and guard.split_insert(text[:MAX_QUERY_BYTES])[1] is None:
            raise ClickHouseError(62, "SYNTAX_ERROR", f"Max query size exceeded: the statement is longer than "
                                                      f"{MAX_QUERY_BYTES} bytes")
        return text, body

    def _error(self, e: ClickHouseError | guard.Refused, headers: dict) -> None:
        endpoint: Endpoint = self.server.endpoint
        headers = {**headers, "X-ClickHouse-Exception-Code": str(e.code)}
        status = _STATUS.get(e.code, 500)
        if e.code == 516 and self.anonymous:  # no credentials at all: ask for them
            status, headers["WWW-Authenticate"] = 401, 'Basic realm="ClickHouse server"'
        text = f"Code: {e.code}. DB::Exception: {e}. ({e.name}) (version {endpoint.version})\n"
        # the body may be unread: the connection cannot carry another request after this one
        self._answer(status, text.encode(), headers, close=True)

    def _answer(self, status: int, body: bytes, headers: dict, close: bool = False, head_only: bool = False) -> None:
        endpoint: Endpoint = self.server.endpoint
        self.send_response(status)
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Server-Display-Name": endpoint.display_name,
                   "X-ClickHouse-Timezone": endpoint.timezone, **headers, "Content-Length": str(len(body))}
        if close:
            headers["Connection"] = "close"
            self.close_connection = True
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)
