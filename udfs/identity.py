"""Identity merging and person profiles (DESIGN.md, Identity).

State per app:
- ``ids``: distinct id -> canonical person id, only for ids merged into another person.
  An id with no entry is its own person, so a visitor who never merges costs nothing.
- ``groups``: canonical person id -> {"members", "merges", "props"} for every person that
  has properties or merges.
- ``version``: a counter that orders the identity and profile records this app emits.

Why the result does not depend on arrival order: a group keeps the *set* of merge edges
(ts, event_id, src, dest) and its canonical id is recomputed by replaying that set in
event-time order (src's person joins dest's person, so the destination's canonical id
wins). Properties keep, per key, the value with the greatest (ts, event_id); a null is kept
as a tombstone so an older value arriving late cannot resurrect it. Both are pure
functions of the set of inputs, so any order (and any replay) converges to one answer.
"""
from __future__ import annotations

import json

from udfs.envelope import CART_METHODS, dead_letter, is_anonymous

PREDEFINED_STRING_PROPERTIES = ("email", "first_name", "last_name", "profile_image")
JOB = "identity_merge"
# A setProperties call on tracktor.events: kind "set", this name, data = the accepted properties.
SET_EVENT = "$set"


def replay_canonical(merges: list) -> dict[str, str]:
    """Every id in `merges` mapped to its canonical id, merging in (ts, event_id) order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for _ts, _eid, src, dest in sorted(merges):
        parent.setdefault(src, src)
        parent.setdefault(dest, dest)
        rs, rd = find(src), find(dest)
        if rs != rd:
            parent[rs] = rd
    return {x: find(x) for x in parent}


def merge_props(a: dict, b: dict) -> dict:
    """Per key, the entry [value, ts, event_id] with the greatest (ts, event_id)."""
    out = dict(a)
    for key, entry in b.items():
        if key not in out or entry[1:] > out[key][1:]:
            out[key] = entry
    return out


def visible(props: dict) -> dict:
    """Properties as a person has them: tombstones (null) left out."""
    return {k: e[0] for k, e in props.items() if e[0] is not None}


class IdentityMerger:
    """Turns one app's raw envelopes into resolved events, identity changes and profiles.

    `process(env)` returns a list of (role, key, record), role being one of
    "events", "identities", "profiles", "dead_letter".
    """

    def __init__(self, ids, groups, version, source_topic: str = "tracktor.raw"):
        self.source_topic = source_topic
        self.ids = ids
        self.groups = groups
        self.version = version

    # -- reading state -------------------------------------------------------------
    def canonical(self, distinct_id: str) -> str:
        return self.ids.get(distinct_id) or distinct_id

    def _group(self, person: str) -> dict:
        return self.groups.get(person) or {"members": [person], "merges": [], "props": {}}

    def _next_version(self) -> int:
        v = (self.version.value() or 0) + 1
        self.version.update(v)
        return v

    # -- the calls -----------------------------------------------------------------
    def process(self, env: dict) -> list:
        kind = env["type"]
        if kind in ("track", "cart"):
            return [self._event(env)]
        if kind == "set":
            return self._set(env)
        if kind == "identify":
            prev = env.get("previous_id")
            if prev and prev != env["id"] and is_anonymous(prev):
                return self._merge(prev, env["id"], env)
            return []  # identify from a known id only switches the client's current person
        if kind == "alias":
            if env["srcid"] == env["destid"]:
                return []
            return self._merge(env["srcid"], env["destid"], env)
        raise ValueError(f"unknown envelope type {kind!r}")

    def _event(self, env: dict):
        person = self.canonical(env["id"])
        if env["type"] == "cart":
            return self._record(env, person, "cart", CART_METHODS[env["cart_action"]], env.get("data") or {})
        return self._record(env, person, "track", env["action"], env.get("data") or {})

    @staticmethod
    def _record(env: dict, person: str, kind: str, name: str, data: dict):
        app = env["app"]
        return ("events", f"{app}:{person}", {
            "event_id": env["event_id"], "app": app, "kind": kind, "event": name,
            "distinct_id": env["id"], "person_id": person, "ts": env["ts"],
            "received_at": env["received_at"], "data": data,
        })

    def _set(self, env: dict) -> list:
        out = []
        data = dict(env["data"])
        for key in PREDEFINED_STRING_PROPERTIES:
            if key in data and data[key] is not None and not isinstance(data[key], str):
                out.append(self._dead_letter(env, f"property {key!r} must be a string or null, got {type(data[key]).__name__}",
                                             {key: data.pop(key)}))
        person = self.canonical(env["id"])
        if data:  # the set itself, for the property history in the warehouse
            out.append(self._record(env, person, "set", SET_EVENT, data))
        group = self._group(person)
        stamp = [env["ts"], env["event_id"]]
        props = merge_props(group["props"], {k: [v, *stamp] for k, v in data.items()})
        if props != group["props"]:
            group["props"] = props
            self.groups.put(person, group)
            out.append(self._profile(env["app"], person, group, env["ts"], self._next_version()))
        return out

    def _merge(self, src: str, dest: str, env: dict) -> list:
        app = env["app"]
        edge = [env["ts"], env["event_id"], src, dest]
        cs, cd = self.canonical(src), self.canonical(dest)
        gs, gd = self._group(cs), self._group(cd)
        if cs == cd:
            if edge in gs["merges"]:
                return []  # a replay of a merge already applied
            group = {**gs, "merges": gs["merges"] + [edge]}
            before = {m: cs for m in gs["members"]}
        else:
            group = {
                "members": sorted(set(gs["members"]) | set(gd["members"])),
                "merges": gs["merges"] + [e for e in gd["merges"] if e not in gs["merges"]] + [edge],
                "props": merge_props(gs["props"], gd["props"]),
            }
            before = {**{m: cs for m in gs["members"]}, **{m: cd for m in gd["members"]}}
        new = replay_canonical(group["merges"])[src]

        for old in {cs, cd} - {new}:
            self.groups.remove(old)
        self.groups.put(new, group)
        version = self._next_version()
        out = []
        for member in group["members"]:
            if member == new:
                self.ids.remove(member)
            elif before[member] != new:
                self.ids.put(member, new)
            if before[member] != new:
                out.append(("identities", f"{app}:{member}", {
                    "app": app, "distinct_id": member, "person_id": new, "version": version,
                    "ts": env["ts"], "event_id": env["event_id"],
                }))
        for old in sorted({cs, cd} - {new}):
            out.append(("profiles", f"{app}:{old}", {
                "app": app, "person_id": old, "properties": {}, "version": version,
                "ts": env["ts"], "merged_into": new,
            }))
        if new != cs or cs != cd:
            out.append(self._profile(app, new, group, env["ts"], version))
        return out

    # -- records -------------------------------------------------------------------
    @staticmethod
    def _profile(app: str, person: str, group: dict, ts: int, version: int):
        return ("profiles", f"{app}:{person}", {
            "app": app, "person_id": person, "properties": visible(group["props"]),
            "version": version, "ts": ts, "merged_into": None,
        })

    def _dead_letter(self, env: dict, reason: str, rejected: dict):
        record = json.dumps({**env, "data": rejected}, sort_keys=True)
        return ("dead_letter", JOB, dead_letter(JOB, self.source_topic, reason, record, env["received_at"]))
