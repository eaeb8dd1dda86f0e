"""One chDB warehouse shared by every process on the machine.

chDB locks its data path to the process that opened it, yet in embedded mode metric_rollup
writes the warehouse while `report`, the HTTP API and tests read it. So the first process
to open a path *owns* it: it holds an exclusive lock file, opens chDB, and serves the
same client calls (query, command, insert) to the other processes on 127.0.0.1, with a
random token written to `<path>.owner.json` (mode 0600). Every other process gets a
`RemoteClient` that forwards its calls there. When the owner closes, the next caller
takes the lock and becomes the owner; a RemoteClient whose owner went away re-resolves
on its next call, so a reader outlives the writer and the other way round.

Against a ClickHouse server none of this is used: clickhouse-connect talks to it directly.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OWNER_WAIT_S = 10.0  # how long a newcomer waits for the lock holder to publish its address


# -- values over the wire: JSON with dates and datetimes tagged ---------------------------
def _encode(value):
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$dt" in value:
            return datetime.fromisoformat(value["$dt"])
        if len(value) == 1 and "$d" in value:
            return date.fromisoformat(value["$d"])
        return {k: _decode(v) for k, v in value.items()}
    return value


class Result:
    """What callers read from a query: `result_rows`, as from clickhouse-connect."""

    def __init__(self, rows: list):
        self.result_rows = [tuple(r) for r in rows]


# -- the owner ------------------------------------------------------------------------------
class OwnerClient:
    """The chDB client of the owning process, serialised by a lock and served to others."""

    def __init__(self, path: Path, lock_fd: int):
        import clickhouse_connect

        self.path, self.lock_fd = path, lock_fd
        self.users = 1  # open_path calls of this process not closed yet
        self.client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        self.mutex = threading.Lock()
        self.token = secrets.token_hex(16)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="chdb-owner", daemon=True).start()
        info = owner_file(path)
        tmp = info.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"port": self.server.server_address[1], "token": self.token, "pid": os.getpid()}, f)
        os.replace(tmp, info)

    def query(self, sql: str, parameters: dict | None = None, settings: dict | None = None):
        with self.mutex:
            return self.client.query(sql, parameters=parameters, settings=settings)

    def command(self, sql: str, parameters: dict | None = None):
        with self.mutex:
            return self.client.command(sql, parameters=parameters)

    def insert(self, table: str, data: list, column_names: list[str]):
        with self.mutex:
            return self.client.insert(table, data, column_names=column_names)

    def close(self) -> None:
        self.users -= 1
        if self.users > 0 or self.client is None:
            return
        _OWNED.pop(self.path, None)
        self.server.shutdown()
        self.server.server_close()
        owner_file(self.path).unlink(missing_ok=True)
        with self.mutex:
            self.client.close()  # releases chDB's own lock on the path
            self.client = None
        os.close(self.lock_fd)  # and ours: the next caller becomes the owner


def _handler(owner: OwnerClient):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            if not secrets.compare_digest(self.headers.get("X-Tracktor-Token", ""), owner.token):
                return self._answer(403, {"error": "wrong token"})
            try:
                call = _decode(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                if self.path == "/query":
                    out = owner.query(call["sql"], call.get("parameters"), call.get("settings")).result_rows
                elif self.path == "/command":
                    out = owner.command(call["sql"], call.get("parameters"))
                    out = out if isinstance(out, (int, str, list)) or out is None else str(out)
                elif self.path == "/insert":
                    owner.insert(call["table"], call["data"], call["column_names"])
                    out = None
                else:
                    return self._answer(404, {"error": f"no call {self.path}"})
            except Exception as e:  # the caller re-raises it: a bad query must not kill the owner
                return self._answer(500, {"error": f"{type(e).__name__}: {e}"})
            self._answer(200, {"result": _encode(out)})

        def _answer(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


# -- everyone else ----------------------------------------------------------------------------
class OwnerError(RuntimeError):
    """The owning process answered with an error (the message is ClickHouse's)."""


class RemoteClient:
    """Forwards calls to the owning process; finds the next owner if this one went away."""

    def __init__(self, path: Path):
        self.path = path
        self.local: OwnerClient | None = None
        self.address: dict | None = None

    def _call(self, what: str, body: dict, local, remote=lambda result: result):
        """`remote(answer)` of the owner's answer to `what`, or `local(owner)` once this
        process has become the owner (the previous one left)."""
        for attempt in range(2):
            if self.local is None and self.address is None:
                self.local, self.address = _resolve(self.path)
            if self.local is not None:
                return local(self.local)
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.address['port']}/{what}", data=json.dumps(_encode(body)).encode(),
                headers={"X-Tracktor-Token": self.address["token"], "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=600) as resp:
                    return remote(_decode(json.loads(resp.read())["result"]))
            except urllib.error.HTTPError as e:
                raise OwnerError(json.loads(e.read()).get("error", str(e))) from None
            except OSError:
                if attempt:
                    raise
                self.address = None  # the owner is gone: look again

    def query(self, sql: str, parameters: dict | None = None, settings: dict | None = None):
        return self._call("query", {"sql": sql, "parameters": parameters, "settings": settings},
                          lambda owner: owner.query(sql, parameters, settings), Result)

    def command(self, sql: str, parameters: dict | None = None):
        return self._call("command", {"sql": sql, "parameters": parameters},
                          lambda owner: owner.command(sql, parameters))

    def insert(self, table: str, data: list, column_names: list[str]):
        self._call("insert", {"table": table, "data": data, "column_names": column_names},
                   lambda owner: owner.insert(table, data, column_names))

    def close(self) -> None:
        if self.local:
            self.local.close()
            self.local = None


def owner_file(path: Path) -> Path:
    return path.with_name(path.name + ".owner.json")


def lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


_OWNED: dict[Path, OwnerClient] = {}  # paths this process owns


def _resolve(path: Path) -> tuple[OwnerClient | None, dict | None]:
    """Become the owner if nobody is, else the owner's address."""
    if path in _OWNED:
        _OWNED[path].users += 1
        return _OWNED[path], None
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                info = json.loads(owner_file(path).read_text())
                return None, info
            except (FileNotFoundError, ValueError):
                pass  # the owner is starting or stopping
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} is locked but its owner publishes no address ({owner_file(path)})")
            time.sleep(0.05)
            continue
        _OWNED[path] = OwnerClient(path, fd)
        return _OWNED[path], None


def wait_released(path: Path, timeout_s: float = 120.0) -> None:
    """Return once no process owns the warehouse at `path` (or this one does): after a
    bounded job, its writer may still be closing, with its last batch, in a worker."""
    path = path.resolve()
    if path in _OWNED:
        return
    deadline = time.monotonic() + timeout_s
    lock = lock_file(path)
    while lock.exists():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} is still owned by another process after {timeout_s:.0f}s") from None
        finally:
            os.close(fd)  # closing the descriptor drops the lock again
        time.sleep(0.1)


def open_path(path: Path):
    """The warehouse at `path`: the owner's client, or a RemoteClient to the owner."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    local, address = _resolve(path)
    if local is not None:
        return local
    remote = RemoteClient(path)
    remote.address = address
    return remote
