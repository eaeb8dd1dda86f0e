"""The small state interface the udfs need, with in-memory versions for tests and tools.

Flink's MapState and ValueState already have this shape (get/put/remove, value/update),
so a job hands its state objects straight in.
"""
from __future__ import annotations

import orjson


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


class JsonStore:
    """A MapState of JSON text seen as a MapState of values."""

    def __init__(self, state):
        self.state = state

    def get(self, key, default=None):
        text = self.state.get(key)
        return default if text is None else orjson.loads(text)

    def put(self, key, value) -> None:
        self.state.put(key, orjson.dumps(value).decode())

    def remove(self, key) -> None:
        self.state.remove(key)

    def keys(self):
        return self.state.keys()


class SplitStore:
    """Two MapStates seen as one: a value that `goes_anonymous(key, value)` is kept in
    `anonymous` (which the job gives a retention time), every other in `identified` (kept
    for good). Only keys that `maybe_anonymous(key)` can be in `anonymous`, so the others
    cost one state access."""

    def __init__(self, identified, anonymous, goes_anonymous, maybe_anonymous):
        self.identified, self.anonymous = identified, anonymous
        self.goes_anonymous, self.maybe_anonymous = goes_anonymous, maybe_anonymous

    def get(self, key, default=None):
        value = self.anonymous.get(key) if self.maybe_anonymous(key) else None
        if value is None:
            value = self.identified.get(key)
        return default if value is None else value

    def put(self, key, value) -> None:
        if self.goes_anonymous(key, value):
            self.anonymous.put(key, value)
            return
        self.identified.put(key, value)
        if self.maybe_anonymous(key):
            self.anonymous.remove(key)  # it was anonymous until now

    def remove(self, key) -> None:
        self.identified.remove(key)
        if self.maybe_anonymous(key):
            self.anonymous.remove(key)


class CachedStore:
    """A MapState read through a dict: the owner of a key reads state once, then memory.

    Only right where one process owns the keys it caches (a Flink subtask and its key
    groups); writes go to both. Absent keys are cached too (most ids never merge), so the
    cache is emptied when it reaches `max_entries`."""

    def __init__(self, state, max_entries: int = 1_000_000):
        self.state = state
        self.max_entries = max_entries
        self.cache: dict = {}

    def get(self, key, default=None):
        if key not in self.cache:
            if len(self.cache) >= self.max_entries:
                self.cache.clear()
            self.cache[key] = self.state.get(key)
        value = self.cache[key]
        return default if value is None else value

    def put(self, key, value) -> None:
        self.cache[key] = value
        self.state.put(key, value)

    def remove(self, key) -> None:
        self.cache[key] = None
        self.state.remove(key)


class BufferedStore:
    """A MapState read and written through a dict for one bundle of calls: `flush()` writes
    each changed key's last value back (a None is a removal) and forgets everything.

    A key touched many times in a bundle costs one read and one write of the state, not one
    per touch. Flush before the state's key (a Flink job's current key) changes."""

    def __init__(self, state):
        self.state = state
        self.values: dict = {}
        self.changed: set = set()

    def get(self, key, default=None):
        if key not in self.values:
            self.values[key] = self.state.get(key)
        value = self.values[key]
        return default if value is None else value

    def put(self, key, value) -> None:
        self.values[key] = value
        self.changed.add(key)

    def remove(self, key) -> None:
        self.put(key, None)

    def keys(self) -> list:
        """Every key, as the state will have them after the flush."""
        keys = set(self.state.keys()) | {k for k, v in self.values.items() if v is not None}
        return sorted(k for k in keys if not (k in self.changed and self.values[k] is None))

    def flush(self) -> None:
        for key in self.changed:
            value = self.values[key]
            if value is None:
                self.state.remove(key)
            else:
                self.state.put(key, value)
        self.values.clear()
        self.changed.clear()


class BufferedCell:
    """BufferedStore's counterpart for a ValueState."""

    _UNREAD = object()

    def __init__(self, state):
        self.state = state
        self._value = self._UNREAD
        self._changed = False

    def value(self):
        if self._value is self._UNREAD:
            self._value = self.state.value()
        return self._value

    def update(self, value) -> None:
        self._value, self._changed = value, True

    def flush(self) -> None:
        if self._changed:
            self.state.update(self._value)
        self._value, self._changed = self._UNREAD, False
