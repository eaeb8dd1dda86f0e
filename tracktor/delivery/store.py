"""What delivery has done, by action id, in SQLite: the outcome records of each action
performed, and whether they reached Kafka. A redelivered request (a replay, a restart
before the offset was committed) finds its action here and is not performed again. One
process holds it at a time (a lock beside it): two would each perform what the other has
not recorded yet."""
from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

import orjson


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = open(path.with_suffix(path.suffix + ".lock"), "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            raise RuntimeError(f"another delivery process uses {path}: run one per state file") from None
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a performed action is on disk before its offset is committed
        self.db.execute("CREATE TABLE IF NOT EXISTS actions (action_id TEXT PRIMARY KEY, outcome BLOB NOT NULL, "
                        "published INTEGER NOT NULL DEFAULT 0, done_at INTEGER NOT NULL)")

    def get(self, action_id: str) -> tuple[list, bool] | None:
        """(the outcome records, whether they reached Kafka) of a performed action, or None."""
        row = self.db.execute("SELECT outcome, published FROM actions WHERE action_id = ?", (action_id,)).fetchone()
        return None if row is None else (orjson.loads(row[0]), bool(row[1]))

    def performed(self, action_id: str, outcome: list, at: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO actions (action_id, outcome, published, done_at) VALUES (?, ?, 0, ?)",
                        (action_id, orjson.dumps(outcome), at))

    def published(self, action_ids: list[str]) -> None:
        self.db.executemany("UPDATE actions SET published = 1 WHERE action_id = ?", [(a,) for a in action_ids])

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM actions").fetchone()[0]

    def close(self) -> None:
        self.db.close()
        self.lock.close()  # and with it the lock
