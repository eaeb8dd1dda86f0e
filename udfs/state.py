"""The small state interface the udfs need, with in-memory versions for tests and tools.

Flink's MapState and ValueState already have this shape (get/put/remove, value/update),
so a job hands its state objects straight in.
"""
from __future__ import annotations


class DictStore(dict):
    """MapState's get/put/remove over a dict."""

    def get(self, key, default=None):
        return super().get(key, default)

    def put(self, key, value) -> None:
        self[key] = value

    def remove(self, key) -> None:
        self.pop(key, None)


class Cell:
    """ValueState's value/update over a variable."""

    def __init__(self, value=None):
        self._value = value

    def value(self):
        return self._value

    def update(self, value) -> None:
        self._value = value
