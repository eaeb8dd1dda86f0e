"""One chDB warehouse shared by every process on the machine.

chDB locks its data path to the process that opened it, yet in embedded mode metric_rollup
writes the warehouse while `report`, the HTTP API, BI tools and tests read it. So the first
process to open a path *owns* it: it holds an exclusive lock file, opens chDB, and serves
ClickHouse's own HTTP interface on 127.0.0.1 (http.py), with the users `writer` and
`reader`. It publishes its port and the writer's credentials in `<path>.owner.json`
(mode 0600). Every other Tracktor process talks to it with clickhouse-connect's ordinary
HTTP client, as to a ClickHouse server. When the owner closes (or dies: the kernel drops
its lock), the next call of any client takes the lock and becomes the owner, so a reader
outlives the writer and the other way round.

Against a ClickHouse server (an http(s) DSN) none of this is used.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from tracktor.config.settings import ClickHouseSettings

log = logging.getLogger(__name__)
OWNER_WAIT_S = 10.0  # how long a newcomer waits for the lock holder to publish its address
WRITER, READER = "writer", "reader"


def owner_file(path: Path) -> Path:
    return path.with_name(path.name + ".owner.json")


def users_file(path: Path) -> Path:
    return path.with_name(path.name + ".users.json")


def lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _write_private(path: Path, content: dict) -> None:
    """Write a new mode-0600 file that is no link (O_EXCL: never one that was there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)


def _read_private(path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        return json.load(f)


def passwords(path: Path, users) -> dict[str, str]:
    """The writer's and the reader's passwords: tracktor.yaml's, else those generated on the
    warehouse's first start and kept in users_file(path). Only the owner calls this: it
    holds the lock, so nobody else creates the file at the same time."""
    generated = users_file(path)
    if not generated.exists():
        _write_private(generated, {WRITER: secrets.token_urlsafe(24), READER: secrets.token_urlsafe(24)})
    kept = _read_private(generated)
    return {WRITER: users.writer.password or kept[WRITER], READER: users.reader.password or kept[READER]}


class OwnerClient:
    """The chDB client of the owning process, serialised by a lock, whose HTTP endpoint
    serves the others."""

    def __init__(self, path: Path, lock_fd: int, settings: ClickHouseSettings):
        import clickhouse_connect

        from tracktor.warehouse.http import Endpoint

        self.path, self.lock_fd = path, lock_fd
        self.users = 1  # open_path calls of this process not closed yet
        self.client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        self.mutex = threading.Lock()
        secret = passwords(path, settings.users)
        users = {WRITER: (secret[WRITER], False), READER: (secret[READER], True)}
        engine = os.path.realpath(path)  # chDB's name for the engine this process opened
        try:
            self.endpoint = Endpoint(engine, self.mutex, users, settings.http.host, settings.http.port)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or settings.http.port == 0:
                raise
            self.endpoint = Endpoint(engine, self.mutex, users, settings.http.host, 0)
            log.warning("port %d is taken: the warehouse's HTTP interface is on %d instead", settings.http.port,
                        self.endpoint.port)
        info = owner_file(path)
        tmp = info.with_name(f"{info.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        _write_private(tmp, {"pid": os.getpid(), "host": settings.http.host, "port": self.endpoint.port,
                             "user": WRITER, "password": secret[WRITER]})
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

    def insert_arrow(self, table: str, block):
        with self.mutex:
            return self.client.insert_arrow(table, block)

    def close(self) -> None:
        self.users -= 1
        if self.users > 0 or self.client is None:
            return
        _OWNED.pop(self.path, None)
        self.endpoint.close()
        owner_file(self.path).unlink(missing_ok=True)
        with self.mutex:
            self.client.close()  # releases chDB's own lock on the path
            self.client = None
        os.close(self.lock_fd)  # and ours: the next caller becomes the owner


class SharedClient:
    """The warehouse from a process that does not own it: clickhouse-connect's HTTP client to
    the owner's endpoint. When the owner has gone, the next call finds the new one, or makes
    this process the owner."""

    def __init__(self, path: Path, settings: ClickHouseSettings):
        self.path, self.settings = path, settings
        self.local: OwnerClient | None = None
        self.remote = None  # clickhouse-connect's HttpClient

    def _call(self, call):
        """`call(client)` with the owner's endpoint (or this process's own client, once it owns
        the warehouse); once more after a fresh look if the endpoint did not answer."""
        from clickhouse_connect.driver.exceptions import OperationalError
        from urllib3.exceptions import HTTPError

        for attempt in range(2):
            try:
                return call(self._client())
            except OperationalError as e:
                if attempt or not isinstance(e.__cause__, HTTPError):  # an answer, not a dead owner
                    raise
                if self.remote is not None:
                    self.remote.close()
                self.remote = None

    def _client(self):
        if self.local is None and self.remote is None:
            local, address = _resolve(self.path, self.settings)
            if local is not None:
                self.local = local
            else:
                import clickhouse_connect
                self.remote = clickhouse_connect.get_client(
                    host=address["host"], port=address["port"], username=address["user"], password=address["password"],
                    compress=False, autogenerate_session_id=False)  # loopback: compression would only cost CPU
        return self.local or self.remote

    def query(self, sql: str, parameters: dict | None = None, settings: dict | None = None):
        return self._call(lambda c: c.query(sql, parameters=parameters, settings=settings))

    def command(self, sql: str, parameters: dict | None = None):
        return self._call(lambda c: c.command(sql, parameters=parameters))

    def insert(self, table: str, data: list, column_names: list[str]):
        return self._call(lambda c: c.insert(table, data, column_names=column_names))

    def insert_arrow(self, table: str, block):
        return self._call(lambda c: c.insert_arrow(table, block))

    def close(self) -> None:
        if self.local:
            self.local.close()
            self.local = None
        if self.remote:
            self.remote.close()
            self.remote = None


_OWNED: dict[Path, OwnerClient] = {}  # paths this process owns


def _resolve(path: Path, settings: ClickHouseSettings) -> tuple[OwnerClient | None, dict | None]:
    """Become the owner if nobody is, else the owner's address and the writer's credentials."""
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
                return None, _read_private(owner_file(path))
            except (FileNotFoundError, ValueError):
                pass  # the owner is starting or stopping
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} is locked but its owner publishes no address ({owner_file(path)})")
            time.sleep(0.05)
            continue
        try:
            _OWNED[path] = OwnerClient(path, fd, settings)
        except BaseException:
            os.close(fd)
            raise
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


def open_path(path: Path, settings: ClickHouseSettings):
    """The warehouse at `path`: the owner's client, or a SharedClient to the owner."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    client = SharedClient(path, settings)
    return client.local if client._call(lambda c: c) is client.local else client
