"""What a bundled function returns: a bundle's output records gathered column by column
(topics, keys, values, timestamps), so they cross into the JVM as one row."""
from __future__ import annotations


class Outputs:
    __slots__ = ("topics", "keys", "values", "stamps")

    def __init__(self):
        self.topics, self.keys, self.values, self.stamps = [], [], [], []

    def add(self, topic: str, key: str, value: str, ts: int) -> None:
        self.topics.append(topic)
        self.keys.append(key)
        self.values.append(value)
        self.stamps.append(ts)

    def records(self) -> list[tuple[str, str, str, int]]:
        return list(zip(self.topics, self.keys, self.values, self.stamps))

    def __bool__(self) -> bool:
        return bool(self.values)
