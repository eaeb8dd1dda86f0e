"""The delivery service: a Kafka consumer of tracktor.actions.

For each request, in order per partition:
1. an action_id performed already is not performed again (a replay, a restart before the
   offset was committed); outcome records that had not reached Kafka are written now;
2. otherwise it is performed: a letter sent (its links and an open pixel signed for the
   collector's /o/ and /c/), a webhook called, an in-app message written to tracktor.inapp,
   a property set or an event emitted as a call on tracktor.raw. A failure worth another
   attempt is tried again after `backoff`, doubling up to `max_backoff`, `max_attempts`
   times in all; then, or at once when the other side refused for good, it is recorded as
   failed, with the reason;
3. the outcome (`Letter sent` / `Letter bounced` / `Letter failed`, `Webhook called` /
   `Webhook failed`, `Message sent`) is stored with the action, written to tracktor.derived
   (again and again while Kafka is away), and only then is the offset committed. Asked to
   stop while an action waits for another attempt, it stores and commits nothing: the next
   start performs it.

So no request is lost or performed twice, except a letter or webhook whose send succeeded in
the instant before the process died and before step 3 stored it (it is sent again, with the
same Message-ID / Idempotency-Key so the other side can tell). A record that is not a valid
request goes to the dead-letter topic with the reason.
"""
from __future__ import annotations

import logging
import re
import threading
import time

import orjson

from tracktor.delivery import senders
from tracktor.delivery.store import Store
from tracktor.dev import envelopes
from udfs.campaigns import OUTCOME_EVENTS
from udfs.envelope import dead_letter
from udfs.letters import tracked

log = logging.getLogger("tracktor.deliver")
GROUP = "tracktor-deliver"
KINDS = ("letter", "in_app", "webhook", "set", "emit")
ACTION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # it goes into headers (Message-ID, Idempotency-Key)


class BadRequest(ValueError):
    pass


class Stopped(Exception):
    """Asked to stop while an action waited for another attempt: it is left for the next start."""


def check_request(record) -> dict:
    """An action request as schemas/tracktor.actions.schema.json has it, or BadRequest."""
    if not isinstance(record, dict):
        raise BadRequest("not a JSON object")
    for key in ("action_id", "app", "campaign", "block", "kind", "person_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise BadRequest(f"{key!r} must be a non-empty string")
    if not ACTION_ID.fullmatch(record["action_id"]):
        raise BadRequest("action_id must be 1-64 letters, digits, '.', '_', ':' or '-'")
    if record["kind"] not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, got {record['kind']!r}"[:200])
    if not isinstance(record.get(record["kind"]), dict):
        raise BadRequest(f"a {record['kind']} request needs {record['kind']!r}, an object")
    body = record[record["kind"]]
    need = {"letter": ("name", "subject", "html"), "in_app": ("title", "body"), "webhook": ("url",),
            "emit": ("event",)}.get(record["kind"], ())
    for key in need:
        if not isinstance(body.get(key), str):
            raise BadRequest(f"{record['kind']}.{key} must be a string")
    if record["kind"] == "webhook" and not body["url"].startswith(("http://", "https://")):
        raise BadRequest("webhook.url must start with http:// or https://")
    return record


class Delivery:
    def __init__(self, cfg, bootstrap_servers: str, group: str = GROUP):
        from confluent_kafka import Consumer, Producer
        self.cfg, self.settings, self.topics = cfg, cfg.delivery, cfg.topics
        self.apps = cfg.apps
        self.store = Store(cfg.data_dir / cfg.delivery.state)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "max.poll.interval.ms": 30 * 60_000,  # retries of one request may take minutes
            "log_level": 3})
        self.producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all",
                                  "enable.idempotence": True, "log_level": 3})
        self.performed = 0  # actions performed by this process (not those found done)
        self.stop_event = threading.Event()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe([self.topics["actions"]])
        try:
            while not self.stop_event.is_set():
                msg = self.consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    log.warning("kafka: %s", msg.error())
                    continue
                try:
                    self.handle(msg.value(), msg.timestamp()[1])
                except Stopped:
                    break
                self._commit(msg)
        finally:
            self.consumer.close()
            self.store.close()

    def _commit(self, msg) -> None:
        """Commit past `msg`; a failure (a rebalance, Kafka away) is logged: the record comes
        again and is found done in the store."""
        from confluent_kafka import KafkaException
        try:
            self.consumer.commit(msg, asynchronous=False)
        except KafkaException as e:
            log.warning("could not commit past %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), e)

    def start(self) -> "Delivery":
        self.thread = threading.Thread(target=self.run, name="deliver", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)

    def handle(self, value: bytes, ts: int) -> None:
        try:
            if value is None:
                raise BadRequest("an empty record (a tombstone)")
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError as e:
                raise BadRequest(f"not JSON: {e}") from None
            request = check_request(record)
            if request["app"] not in self.apps:
                raise BadRequest(f"no app {request['app']!r} in this configuration")
        except BadRequest as e:
            self._write([("dead_letter", "deliver", dead_letter("deliver", self.topics["actions"], str(e),
                                                               (value or b"").decode(errors="replace")))])
            return
        done = self.store.get(request["action_id"])
        if done is not None:
            if not done[1]:
                self._write(done[0])
                self.store.published([request["action_id"]])
            return
        outcome = self.perform(request)
        self.store.performed(request["action_id"], outcome, _now())
        self._write(outcome)
        self.store.published([request["action_id"]])
        self.performed += 1

    # -- actions -----------------------------------------------------------------------
    def perform(self, request: dict) -> list:
        """Do it (with its retries); the records that tell what happened: (role, key, record)."""
        kind, app, person = request["kind"], request["app"], request["person_id"]
        key = f"{app}:{person}"
        body = request[kind]
        now = _now()
        if kind == "set":
            return [self._raw(envelopes.set_properties(app, person, body, now, event_id=request["action_id"]))]
        if kind == "emit":
            return [self._raw(envelopes.track(app, person, body["event"], now, body.get("data") or {},
                                              event_id=request["action_id"]))]
        if kind == "in_app":
            message = {"action_id": request["action_id"], "app": app, "campaign": request["campaign"],
                       "person_id": person, "title": body["title"], "body": body["body"], "ts": now}
            return [("inapp", key, message), self._event(request, OUTCOME_EVENTS["in_app"][0], {"title": body["title"]})]
        ok, refused, failed = OUTCOME_EVENTS[kind]
        if kind == "letter":
            fields = {"a": app, "p": person, "id": request["action_id"], "c": request["campaign"], "l": body["name"]}
            details = {"letter": body["name"], "email": body.get("to"), "subject": body["subject"]}

            def attempt():
                msg = senders.letter(self.settings.smtp, body.get("to"), body["subject"],
                                     tracked(body["html"], self.cfg.tracking_url, self.apps[app].secret, fields),
                                     request["action_id"])
                senders.send_letter(self.settings.smtp, msg)
                return {}
        else:
            details = {"url": body["url"]}
            payload = {"action_id": request["action_id"], "app": app, "campaign": request["campaign"],
                       "block": request["block"], "person_id": person, "data": body.get("payload") or {}}

            def attempt():
                return {"status": senders.call_webhook(body["url"], payload, request["action_id"],
                                                       self.settings.webhook_timeout)}
        try:
            result, attempts = self._with_retries(attempt)
            return [self._event(request, ok, {**details, **result, "attempts": attempts})]
        except senders.Refused as e:
            return [self._event(request, refused, {**details, "reason": str(e)})]
        except senders.Unavailable as e:
            return [self._event(request, failed, {**details, "reason": f"{e} (after {self.settings.max_attempts} "
                                                                      "attempts)"})]

    def _with_retries(self, attempt):
        wait = self.settings.backoff
        for n in range(1, self.settings.max_attempts + 1):
            try:
                return attempt(), n
            except senders.Refused:
                raise
            except senders.Unavailable as e:
                if self.stop_event.is_set():
                    raise Stopped() from None
                if n == self.settings.max_attempts:
                    raise
                log.warning("attempt %d of %d failed, again in %.1f s: %s", n, self.settings.max_attempts, wait, e)
                if self.stop_event.wait(wait):
                    raise Stopped() from None  # neither stored nor committed: the next start tries again
                wait = min(wait * 2, self.settings.max_backoff)
            except Exception as e:  # noqa: BLE001 - a request we cannot perform is recorded, never stops delivery
                log.exception("action %s", attempt)
                raise senders.Refused(f"could not be performed: {type(e).__name__}: {e}"[:500]) from None

    # -- records -----------------------------------------------------------------------
    @staticmethod
    def _event(request: dict, name: str, data: dict) -> tuple:
        now = _now()
        suffix = name.lower().replace(" ", "_")
        return ("derived", f"{request['app']}:{request['person_id']}", {
            "event_id": f"{request['action_id']}:{suffix}", "app": request["app"], "kind": "derived", "event": name,
            "distinct_id": request["person_id"], "person_id": request["person_id"], "ts": now, "received_at": now,
            "data": {"campaign": request["campaign"], "block": request["block"], "action_id": request["action_id"],
                     **data}})

    @staticmethod
    def _raw(env: dict) -> tuple:
        return ("raw", envelopes.kafka_key(env), env)

    def _write(self, records: list) -> None:
        """Write the records and wait until Kafka has them all, trying again while Kafka is away
        (they are idempotent: event ids, action ids); Stopped when asked to stop meanwhile."""
        wait = self.settings.backoff
        while True:
            failures = []
            for role, key, record in records:
                self.producer.produce(self.topics[role], orjson.dumps(record), key.encode(),
                                      on_delivery=lambda err, _m: err and failures.append(str(err)))
            if not self.producer.flush(60) and not failures:
                return
            log.warning("Kafka did not take the delivery's records (%s): again in %.1f s", failures or "timed out", wait)
            if self.stop_event.wait(wait):
                raise Stopped()
            wait = min(wait * 2, self.settings.max_backoff)


def _now() -> int:
    return int(time.time() * 1000)
