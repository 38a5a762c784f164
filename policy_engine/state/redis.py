"""``redis://host:port/db``: recorded payments in Redis, shared by many engine instances and processes.

Key layout (every key carries a Redis Cluster hash tag, so each entity's keys live in one slot):

- ``pe:e:{<entity>}:lock``: the entity's lock;
- ``pe:e:{<entity>}:z:<aggregate>``: a sorted set of request ids scored by instant (the window index);
- ``pe:e:{<entity>}:h:<aggregate>``: request id -> the entry (value, matches, event, outcome) as JSON;
- ``pe:r:{<request_id>}:lock`` and ``pe:r:{<request_id>}:payment`` (digest, instant, outcome, status, decision).

Entity and request ids are percent-encoded in the keys, so no id can end a hash tag or look like another key.

One payment touches several entities (payer, device, card...) and its own request id, which Cluster puts in
different slots, so one Lua script or one MULTI over all of them is impossible. Atomicity is per entity:

1. :meth:`_Txn.recorded` takes the request's lock first (two evaluations of one ``request_id`` are serialised,
   so a retry racing its original gets the recorded decision, never a second count);
2. :meth:`_Txn.rows` takes each entity's lock before reading its rows and holds it to the end of the
   transaction, so nobody appends to that entity between our read and our record: two instances racing on one
   payer's limit are ordered by the payer's lock and the second reads the first's payment;
3. :meth:`_Txn.record` appends each entity's entries with one Lua script that first checks the entity's lock is
   still ours (a fencing check: a process paused past the lock's expiry fails instead of appending over someone
   else's read), then writes the payment record, again only while the request lock is ours; the locks are then
   released.

Locks are taken in one order for every evaluation with one pack (the request, then the entities in the pack's
aggregate order), so evaluations do not wait on each other in a cycle, except where one id is two entities at once
(a payer id equal to another payment's device id, with the roles swapped) or two instances run packs that order
their aggregates differently. Waiting is bounded (``lock_wait``), so such a cycle ends in an
:class:`~policy_engine.EvaluationError` for the evaluations caught in it, never in a decision made without the
lock: liveness may suffer, the limits never do.

A Redis that loses its data (restarted without persistence, flushed, keys evicted) would read as one where nobody
ever paid. So the first engine to open a store writes a random marker, ``pe:epoch``, and every engine remembers the
one it found: a transaction that finds it gone or changed after taking its request's lock (a lock taken on the
server that lost the data) fails instead of counting from zero, until the data is restored or the engine is
restarted, which accepts what is there now.

Entries are keyed by request id, so writing them again is idempotent. A crash between the entity scripts and the
payment record leaves entries without a payment: they keep counting with their recorded outcome (failing closed),
a retry of that request id is evaluated again without counting its own earlier entries, and
its new entries replace them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import quote

import redis

from ..aggregates import PENDING, Row
from ..errors import StoreUnavailableError
from .store import Payment, Recorded, redacted, unknown_request

PREFIX = "pe"
#: The marker of the data this engine opened (see the module docstring).
EPOCH_KEY = f"{PREFIX}:epoch"
#: A lock outlives any healthy evaluation by far; if it expires anyway the fencing check refuses the record.
LOCK_TTL_MS = 30_000

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lock, then (zset, hash) per aggregate; ARGV: token, request id, instant, then per aggregate its entry and
# the instant before which its rows are pruned (retention: "-inf" keeps every row)
_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('entity lock lost before recording') end
for i = 2, #KEYS, 2 do
  local keep_from = ARGV[i + 3]
  local old = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '(' .. keep_from)
  for j = 1, #old, 1000 do  -- unpack has a stack limit: delete in slices
    redis.call('HDEL', KEYS[i + 1], unpack(old, j, math.min(j + 999, #old)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. keep_from)
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[i + 1], ARGV[2], ARGV[i + 2])
end
return 1
"""
# KEYS: zset, hash of one aggregate and entity; ARGV: lo, hi (inclusive): ids, instants and entries, one round trip
_READ = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
if #found == 0 then return {} end
local ids = {}
for i = 1, #found, 2 do ids[#ids + 1] = found[i] end
return {found, redis.call('HMGET', KEYS[2], unpack(ids))}
"""
# KEYS: request lock, payment; ARGV: token, then field/value pairs
_PAYMENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('request lock lost before recording') end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1
"""
_REPORT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
"""


def _tag(kind: str, ident: str) -> str:
    return f"{PREFIX}:{kind}:{{{quote(ident, safe='')}}}"


def _failure(url: str, exc: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"state store {url} is unreachable or corrupt ({type(exc).__name__}: {exc}); no "
                                 "decision is made without the counters")


class _Txn:
    def __init__(self, store: RedisStore):
        self._store = store
        self._db = store._db
        self._token = secrets.token_hex(16)
        self._locks: dict[str, str] = {}  # hash-tagged key prefix -> its lock key
        self._request_id: str | None = None

    def recorded(self, request_id: str) -> Recorded | None:
        self._request_id = request_id
        self._lock(_tag("r", request_id))
        # the marker read after the request's lock is held: data lost after this read loses the lock too, and
        # the fencing check then refuses the record
        pipe = self._db.pipeline(transaction=False)
        pipe.hmget(f"{_tag('r', request_id)}:payment", ["digest", "decision", "status"])
        pipe.get(EPOCH_KEY)
        found, epoch = pipe.execute()
        self._store.check_epoch(epoch)
        return None if found[0] is None else Recorded(found[0], found[1], found[2] or PENDING)

    def rows(self, aggregate: str, entity: str, lo: int, hi: int) -> list[Row]:
        base = _tag("e", entity)
        if not self._locks:  # reading counters without a request (counters(), explain): check the marker here
            self._store.check_epoch(self._db.get(EPOCH_KEY))
        self._lock(base)
        found = self._store._read(keys=[f"{base}:z:{aggregate}", f"{base}:h:{aggregate}"], args=[lo, hi - 1])
        if not found:
            return []
        flat, entries = found
        # the payment being decided never counts itself (see the module docstring)
        mine = [(rid, int(instant), entry) for rid, instant, entry in zip(flat[::2], flat[1::2], entries, strict=True)
                if rid != self._request_id]
        statuses = self._statuses([rid for rid, _, _ in mine])
        rows = []
        for rid, instant, entry in mine:
            try:
                value, matches, event, outcome = json.loads(entry)
            except (TypeError, ValueError) as exc:  # an entry written by something else, or none for the id
                raise StoreUnavailableError(f"state store {self._store.url} is corrupt: {base}:h:{aggregate} holds "
                                            f"{entry!r} for {rid!r}, not an entry this engine wrote; no decision "
                                            "is made without the counters") from exc
            rows.append(Row(instant, value, matches, event, outcome, statuses[rid]))
        return rows

    def record(self, payment: Payment) -> None:
        by_entity: dict[str, list] = {}
        for e in payment.entries:
            by_entity.setdefault(e.entity, []).append(e)
        for entity, entries in by_entity.items():
            base = _tag("e", entity)
            self._lock(base)  # an entry for an aggregate the rules do not read: its entity was not read yet
            keys = [self._locks[base]]
            args: list[str | int] = [self._token, payment.request_id, payment.instant]
            for e in entries:
                keys += [f"{base}:z:{e.aggregate}", f"{base}:h:{e.aggregate}"]
                args += [json.dumps([e.value, e.matches, e.event, payment.outcome]),
                         "-inf" if e.keep_from is None else e.keep_from]
            self._store._append(keys=keys, args=args)
        base = _tag("r", payment.request_id)
        self._store._payment(keys=[self._locks[base], f"{base}:payment"], args=[
            self._token, "digest", payment.digest, "instant", payment.instant, "outcome", payment.outcome,
            "status", PENDING, "decision", payment.decision])

    def _statuses(self, request_ids: list[str]) -> dict[str, str]:
        """Each payment's downstream status; entries without a payment record (a crashed write) count as pending."""
        if not request_ids:
            return {}
        pipe = self._db.pipeline(transaction=False)  # one key per request: no cross-slot transaction needed
        for rid in request_ids:
            pipe.hget(f"{_tag('r', rid)}:payment", "status")
        return {rid: status or PENDING for rid, status in zip(request_ids, pipe.execute(), strict=True)}

    def _lock(self, base: str) -> None:
        if base in self._locks:
            return
        key = f"{base}:lock"
        deadline = time.monotonic() + self._store.lock_wait
        delay = 0.0005
        while not self._db.set(key, self._token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"state store {self._store.url}: {key} stayed locked for "
                                      f"{self._store.lock_wait}s; no decision is made without the counters")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        self._locks[base] = key

    def release(self) -> None:
        for key in self._locks.values():
            self._store._release(keys=[key], args=[self._token])


class RedisStore:
    """A connection pool per store (thread-safe); every transaction uses its own locks and token."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0, timeout: float = 5.0, lock_wait: float = 10.0):
        self.url = redacted(url)  # every message names the store by it: never its password
        self.lock_wait = lock_wait
        try:
            self._db = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=timeout,
                                            decode_responses=True)
            self._db.set(EPOCH_KEY, secrets.token_hex(16), nx=True)
            self._epoch = self._db.get(EPOCH_KEY)
        except (redis.RedisError, ValueError) as exc:
            raise _failure(self.url, exc) from exc
        self._read = self._db.register_script(_READ)
        self._append = self._db.register_script(_APPEND)
        self._payment = self._db.register_script(_PAYMENT)
        self._release = self._db.register_script(_RELEASE)
        self._report = self._db.register_script(_REPORT)

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        txn = _Txn(self)
        try:
            yield txn
        except redis.RedisError as exc:
            raise _failure(self.url, exc) from exc
        finally:
            # the locks expire by themselves; the transaction's own outcome is what the caller needs
            with suppress(redis.RedisError):
                txn.release()

    def check_epoch(self, found: str | None) -> None:
        """Raise unless ``found`` (``pe:epoch`` as read now) is the marker this engine opened."""
        if found != self._epoch:
            raise StoreUnavailableError(
                f"state store {self.url} lost its data since this engine opened it (its marker {EPOCH_KEY} is "
                f"{'gone' if found is None else 'another'}: Redis restarted without persistence, was flushed or "
                "evicted keys); no decision is made without the counters: restore the data, or restart the engine "
                "to count from what the store holds now")

    def report(self, request_id: str, status: str) -> None:
        try:
            self.check_epoch(self._db.get(EPOCH_KEY))
            changed = self._report(keys=[f"{_tag('r', request_id)}:payment"], args=[status])
        except redis.RedisError as exc:
            raise _failure(self.url, exc) from exc
        if not changed:
            raise unknown_request(request_id, self.url)

    def ping(self) -> None:
        try:
            self.check_epoch(self._db.get(EPOCH_KEY))
        except redis.RedisError as exc:
            raise _failure(self.url, exc) from exc

    def close(self) -> None:
        self._db.close()
