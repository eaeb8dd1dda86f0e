"""Identity merging and person profiles (DESIGN.md, Identity; docs/identity.md).

State per app:
- ``ids``: distinct id -> canonical person id, only for ids merged into another person.
  An id with no entry is its own person, so a visitor who never merges costs nothing.
- ``groups``: canonical person id -> {"members", "merges", "props"} for every person that
  has properties or merges.
- ``version``: a counter that orders the identity and profile records this app emits.

Why the result does not depend on arrival order: a group keeps the merge edges
(ts, event_id, src, dest) that join two separate persons when replayed in event-time order,
and its canonical id is recomputed by that replay (src's person joins dest's person, so the
destination's canonical id wins). An edge that joins nothing at its place in time can never
join anything later (more edges only connect more), so it is dropped: repeated aliases add
nothing, and a person keeps exactly members - 1 edges. Properties keep, per key, the value
with the greatest (ts, event_id); a null is kept as a tombstone so an older value arriving
late cannot resurrect it. Both are functions of the set of inputs, so any order (and any
replay) converges to one answer.
"""
from __future__ import annotations

import orjson

from udfs.envelope import CART_METHODS, dead_letter, failure_reason, is_anonymous, parse_raw
from udfs.limits import MAX_MEMBERS, MAX_PROFILE_BYTES, MAX_PROPERTIES
from udfs.outputs import Outputs
from udfs.state import BufferedCell, BufferedStore, CachedStore, JsonStore, SplitStore

PREDEFINED_STRING_PROPERTIES = ("email", "first_name", "last_name", "profile_image")
JOB = "identity_merge"
# A setProperties call on tracktor.events: kind "set", this name, data = the accepted properties.
SET_EVENT = "$set"
# A merge told to the per-person jobs on tracktor.events, in order with each person's events:
# the merged-away person gets {"merged_into": survivor}, the survivor {"merged": [persons]}.
MERGE_EVENT = "$merge"
# A person deleted (`tracktor people delete`): told to each of their ids on tracktor.events.
DELETE_EVENT = "$delete"


def _replay(merges: list) -> tuple[dict[str, str], list]:
    """Union-find over the edges in (ts, event_id) order: every id's canonical id, and the
    edges that joined two separate persons."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    joining = []
    for edge in sorted(merges):
        _ts, _eid, src, dest = edge
        parent.setdefault(src, src)
        parent.setdefault(dest, dest)
        rs, rd = find(src), find(dest)
        if rs != rd:
            parent[rs] = rd
            joining.append(edge)
    return {x: find(x) for x in parent}, joining


def replay_canonical(merges: list) -> dict[str, str]:
    """Every id in `merges` mapped to its canonical id, merging in (ts, event_id) order."""
    return _replay(merges)[0]


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


def _size(props: dict) -> int:
    return len(orjson.dumps(props))


def is_anonymous_group(person: str, group: dict) -> bool:
    """A person kept only for the anonymous retention: an anonymous id whose every member is
    anonymous (an identified id merged into an anonymous one keeps the person for good)."""
    return is_anonymous(person) and all(is_anonymous(m) for m in group["members"])


def within_caps(props: dict) -> bool:
    return len(props) <= MAX_PROPERTIES and _size(props) <= MAX_PROFILE_BYTES


def capped(props: dict) -> tuple[dict, list[str]]:
    """At most MAX_PROPERTIES entries in MAX_PROFILE_BYTES, the newest kept: (kept, dropped
    keys). A function of the entries alone, so two persons merge to one result in any order."""
    if within_caps(props):
        return props, []
    kept, size = {}, 2
    for key, entry in sorted(props.items(), key=lambda kv: (kv[1][1:], kv[0]), reverse=True):
        cost = len(orjson.dumps({key: entry})) - 1
        if len(kept) < MAX_PROPERTIES and size + cost <= MAX_PROFILE_BYTES:
            kept[key] = entry
            size += cost
    return kept, sorted(set(props) - set(kept))


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

    def still_anonymous(self, person: str) -> bool:
        """The person is not merged with any identified id (every member is anonymous)."""
        return all(is_anonymous(m) for m in self._group(person)["members"])

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
        if kind == "delete":
            return self._delete(env)
        raise ValueError(f"unknown envelope type {kind!r}")

    def _event(self, env: dict):
        person = self.canonical(env["id"])
        if env["type"] == "cart":
            return self._record(env, person, "cart", CART_METHODS[env["cart_action"]], env.get("data") or {})
        return self._record(env, person, "track", env["action"], env.get("data") or {})

    @staticmethod
    def _record(env: dict, person: str, kind: str, name: str, data: dict, event_id: str | None = None,
                distinct_id: str | None = None):
        app = env["app"]
        return ("events", f"{app}:{person}", {
            "event_id": event_id or env["event_id"], "app": app, "kind": kind, "event": name,
            "distinct_id": distinct_id or env["id"], "person_id": person, "ts": env["ts"],
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
        group = self._group(person)
        stamp = [env["ts"], env["event_id"]]
        props = merge_props(group["props"], {k: [v, *stamp] for k, v in data.items()})
        if not within_caps(props):
            new_keys = sorted(set(data) - set(group["props"]))
            kept = {k: v for k, v in data.items() if k in group["props"]}
            props = merge_props(group["props"], {k: [v, *stamp] for k, v in kept.items()})
            if not within_caps(props):
                new_keys, kept, props = sorted(data), {}, group["props"]
            out.append(self._dead_letter(env, f"the person would have more than {MAX_PROPERTIES} properties or "
                                              f"{MAX_PROFILE_BYTES:,} bytes of them: not set", {k: data[k] for k in new_keys}))
            data = kept
        if data:  # the set itself, for the property history in the warehouse
            out.append(self._record(env, person, "set", SET_EVENT, data))
        if props != group["props"]:
            group["props"] = props
            self.groups.put(person, group)
            out.append(self._profile(env["app"], person, group, env["ts"], self._next_version()))
        return out

    def _merge(self, src: str, dest: str, env: dict) -> list:
        app = env["app"]
        edge = [env["ts"], env["event_id"], src, dest]
        cs, cd = self.canonical(src), self.canonical(dest)
        if env.get("unsigned_source") and not self.still_anonymous(cs):
            return [self._dead_letter(env, f"cannot merge {src!r} unsigned: it already belongs to the identified person "
                                           f"{cs!r} (sign it to merge it)", {})]
        gs, gd = self._group(cs), self._group(cd)
        if edge in gs["merges"]:
            return []  # a replay of a merge already applied
        out = []
        if cs == cd:
            _, joining = _replay(gs["merges"] + [edge])
            if edge not in joining:
                return []  # joins nothing that is not joined already: no new edge
            group = {**gs, "merges": joining}
            before = {m: cs for m in gs["members"]}
        else:
            members = sorted(set(gs["members"]) | set(gd["members"]))
            if len(members) > MAX_MEMBERS:
                return [self._dead_letter(env, f"merging {src!r} into {dest!r} would give one person more than "
                                               f"{MAX_MEMBERS} ids: not merged", {})]
            props, dropped = capped(merge_props(gs["props"], gd["props"]))
            if dropped:
                out.append(self._dead_letter(env, f"the merged person would have more than {MAX_PROPERTIES} properties "
                                                  f"or {MAX_PROFILE_BYTES:,} bytes of them: the oldest were dropped",
                                             {k: None for k in dropped}))
            group = {"members": members, "merges": _replay(gs["merges"] + gd["merges"] + [edge])[1], "props": props}
            before = {**{m: cs for m in gs["members"]}, **{m: cd for m in gd["members"]}}
        new = replay_canonical(group["merges"])[src]

        olds = sorted({cs, cd} - {new})
        for old in olds:
            self.groups.remove(old)
        self.groups.put(new, group)
        version = self._next_version()
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
        for old in olds:
            out.append(("profiles", f"{app}:{old}", {
                "app": app, "person_id": old, "properties": {}, "version": version,
                "ts": env["ts"], "merged_into": new,
            }))
            out.append(self._record(env, old, "merge", MERGE_EVENT, {"merged_into": new},
                                    event_id=f"{env['event_id']}:{old}", distinct_id=old))
        if olds:
            out.append(self._record(env, new, "merge", MERGE_EVENT, {"merged": olds},
                                    event_id=f"{env['event_id']}:{new}", distinct_id=new))
            out.append(self._profile(app, new, group, env["ts"], version))
        return out

    def _delete(self, env: dict) -> list:
        """Forget the person `env["id"]` belongs to and all their ids: their state goes, their
        keys on tracktor.identities and tracktor.profiles (the merged-away persons' too) get
        tombstones (value None), and
        each id gets a `$delete` notice (data: the person and all their ids) on
        tracktor.events, for the per-person jobs and the warehouse."""
        app, person = env["app"], self.canonical(env["id"])
        members = self._group(person)["members"]
        for member in members:
            self.ids.remove(member)
        self.groups.remove(person)
        data = {"person_id": person, "ids": members}
        out = [(role, f"{app}:{member}", None) for role in ("identities", "profiles") for member in members]
        out += [self._record(env, member, "delete", DELETE_EVENT, data, event_id=f"{env['event_id']}:{member}",
                             distinct_id=member) for member in members]
        return out

    # -- records -------------------------------------------------------------------
    @staticmethod
    def _profile(app: str, person: str, group: dict, ts: int, version: int):
        return ("profiles", f"{app}:{person}", {
            "app": app, "person_id": person, "properties": visible(group["props"]),
            "version": version, "ts": ts, "merged_into": None,
        })

    def _dead_letter(self, env: dict, reason: str, rejected: dict):
        record = orjson.dumps({**env, "data": rejected}, option=orjson.OPT_SORT_KEYS).decode()
        return ("dead_letter", JOB, dead_letter(JOB, self.source_topic, reason, record, env["received_at"]))


class AppBundles:
    """What identity_merge's keyed function does with a bundle of one app's raw records.

    The state objects are the function's Flink states (scoped to the current key, the app)
    or, in tests, models of them. Reads and writes go through buffers for the length of a
    bundle and each changed key is written back once at its end (`process` flushes them
    while the bundle's app is still the current key); each app has its own merger, so its
    cache of id redirects only ever holds that app's ids.
    """

    def __init__(self, ids, groups, anonymous_groups, version, topics: dict):
        self.topics = topics
        self.ids = BufferedStore(ids)
        self.groups = BufferedStore(SplitStore(JsonStore(groups), JsonStore(anonymous_groups),
                                               is_anonymous_group, is_anonymous))
        self.version = BufferedCell(version)
        self.mergers: dict[str, IdentityMerger] = {}

    def merger_for(self, app: str) -> IdentityMerger:
        merger = self.mergers.get(app)
        if merger is None:
            merger = self.mergers[app] = IdentityMerger(CachedStore(self.ids), self.groups, self.version,
                                                        self.topics["raw"])
        return merger

    def process(self, app: str, texts, stamps) -> Outputs:
        """One bundle of `app`'s raw records in topic order -> all their output records. A
        record that fails for any reason becomes a dead letter; the others go on."""
        merger, topics = self.merger_for(app), self.topics
        out = Outputs()
        for text, ts in zip(texts, stamps):
            try:
                env = parse_raw(text)
                if env["app"] != app:
                    raise ValueError(f"record keyed {app!r} is for app {env['app']!r}: raw records are keyed by app")
                records = [(topics[role], key, None if record is None else orjson.dumps(record).decode())
                           for role, key, record in merger.process(env)]
            except Exception as e:  # noqa: BLE001 - one record must never stop the job
                records = [(topics["dead_letter"], JOB,
                            orjson.dumps(dead_letter(JOB, topics["raw"], failure_reason(e), text, ts)).decode())]
            for topic, key, value in records:
                out.add(topic, key, value, ts)
        for buffered in (self.ids, self.groups, self.version):
            buffered.flush()
        return out
