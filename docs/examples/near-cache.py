#!/usr/bin/env python3
"""An in-process near cache in front of sqlcached (Python 3 standard library).

NearCache keeps values read from sqlcached in process memory and drops them
when the change stream (GET /v1/watch, Server-Sent Events) reports that the
key changed. It is a read-through cache: a miss, or an entry it may not
trust, is read from sqlcached (re-validated with If-None-Match when it holds
a version, so an unchanged value costs a 304 and no body).

Staleness is bounded, not zero:

* While the stream is connected, an entry is dropped as soon as the event of
  a newer version arrives; a read returns a value older than an acknowledged
  write only for as long as that write's event takes to reach the process
  (the server's event latency, well under a second on a healthy server).
* The stream counts as down when its connection fails or closes, or when no
  byte at all (not even a keep-alive comment, which sqlcached sends at least
  every 15 s) arrived for `idle_timeout` seconds (default 20). While it is
  down, nothing held is trusted: every read re-validates with sqlcached.
* An entry is trusted only within the connection (epoch) it was validated
  in. After a reconnect the stream resumes with Last-Event-ID (missing no
  event), and each entry is re-validated once before it is trusted again.
* On 410 history_truncated (the stream was away for longer than the
  server's history) every entry is dropped, the stream restarts from now,
  and, with `preload`, the prefix is listed and loaded again.
* Keys written with a TTL are served until their `expire` event arrives
  (sqlcached sends it within 2 s of the expiry) or their known expiry
  passes; `max_age` (optional) re-validates any entry older than it.

A fill cannot resurrect an old value: every read through sqlcached is
registered while it runs, and an event for that key arriving meanwhile
with a newer version keeps the answer out of the cache. The newest change
version seen for each of the last `max(max_entries, 10000)` keys changed is
remembered too, because an event may arrive before its write is answered,
while a GET can still answer the old value (legitimately: the write is not
acknowledged yet); such an answer is returned but not stored.

Threads: one background thread reads the stream; every public method may be
called from any thread. One lock guards the entries and the stream state;
no HTTP request is made while holding it. Memory: at most `max_entries`
entries (least recently used evicted).

CLI: python3 near-cache.py --demo http://127.0.0.1:8080 [--prefix P]
"""

import argparse
import collections
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

__all__ = ["NearCache", "NearCacheError"]


class NearCacheError(Exception):
    """An answer from sqlcached that the near cache cannot use."""

    def __init__(self, status, body):
        super().__init__("sqlcached answered %d: %s" % (status, body[:200]))
        self.status = status
        self.body = body


class _Entry:
    __slots__ = ("value", "content_type", "version", "expires_at", "epoch", "stored")

    def __init__(self, value, content_type, version, expires_at, epoch, stored):
        self.value = value            # bytes, or None for a key known absent
        self.content_type = content_type
        self.version = version        # ETag version; 0 for an absent key
        self.expires_at = expires_at  # epoch ms, or None
        self.epoch = epoch            # stream connection it was validated in
        self.stored = stored          # monotonic time of the last validation


_ALWAYS_NEWER = float("inf")  # a local DELETE: its version is not known


class NearCache:
    """A near cache of the keys starting with `prefix` (all keys by default).

    base_url      sqlcached's address, e.g. "http://127.0.0.1:8080"
    prefix        only keys starting with it may be read (the stream's filter)
    token         bearer token when the daemon runs with --auth-token
    idle_timeout  seconds without a byte on the stream before it counts as
                  down; must exceed the server's keep-alive interval (15 s)
    max_entries   bound on the entries held (LRU eviction)
    max_age       seconds after which an entry is re-validated even while
                  the stream is up (None: no limit)
    preload       list and load the prefix at start and after a 410
    timeout       seconds for each plain request
    """

    def __init__(self, base_url, prefix="", token=None, idle_timeout=20.0,
                 max_entries=10000, max_age=None, preload=False, timeout=10.0):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("base_url must be http://HOST:PORT or https://HOST:PORT")
        self._scheme, self._host = url.scheme, url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._base_path = url.path.rstrip("/")
        self.prefix = prefix
        self._token = token
        self.idle_timeout = float(idle_timeout)
        self.max_entries = int(max_entries)
        self.max_age = max_age
        self.preload = preload
        self.timeout = float(timeout)

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._entries = collections.OrderedDict()   # key -> _Entry, LRU order
        self._inflight = {}        # key -> [readers, newest event version seen]
        self._recent = collections.OrderedDict()  # key -> (newest change, deleted?)
        self._recent_max = max(self.max_entries, 10000)
        self._epoch = 0            # bumped on every stream (re)connect
        self._connected = False
        self._last_byte = 0.0      # monotonic time of the last stream byte
        self._cursor = None        # version of the last event applied
        self._sock = None          # the stream's socket, to break it
        self._paused = False
        self._closed = False
        self._preload_due = preload
        self.last_error = None     # the stream's last failure, for logs
        self.last_oldest = None    # "oldest" of the last 410
        self.stats = collections.Counter()   # written under the lock
        self._local = threading.local()      # .conn: this thread's connection

        self._thread = threading.Thread(target=self._run_stream, name="near-cache-stream",
                                        daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------

    def get(self, key, default=None):
        """The value of `key` (bytes), or `default` when it is absent.

        Raises NearCacheError on an unexpected answer, OSError when sqlcached
        cannot be reached (nothing held is returned instead: it may be stale).
        """
        value, _ = self.get_versioned(key)
        return default if value is None else value

    def get_versioned(self, key):
        """(value bytes or None, version): as get(), with the ETag version."""
        self._check_key(key)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            up = self._stream_up(now)
            if entry is not None and up and self._trusted(entry, now):
                self._entries.move_to_end(key)
                self.stats["hits"] += 1
                return entry.value, (0 if entry.value is None else entry.version)
            epoch = self._epoch if up else None
            known = entry.version if entry is not None and entry.value is not None else None
            slot = self._inflight.setdefault(key, [0, 0])
            slot[0] += 1
        try:
            value, ctype, version = self._fetch(key, known)
        except BaseException:
            with self._lock:
                self._leave_inflight(key)
            raise
        if value is _NOT_MODIFIED:
            value, ctype = entry.value, entry.content_type
            self._fill(key, value, ctype, version, epoch, "revalidated")
        else:
            self._fill(key, value, ctype, version, epoch, "misses")
        return value, version

    def put(self, key, value, ttl=None, content_type="application/octet-stream"):
        """Write `value` (bytes or str) to sqlcached; returns its version.
        The entry held here is dropped once the write is acknowledged."""
        self._check_key(key)
        if isinstance(value, str):
            value = value.encode()
        path = self._kv_path(key) + ("?ttl=%d" % ttl if ttl else "")
        status, _, body = self._request("PUT", path, value, {"Content-Type": content_type})
        if status not in (200, 201):
            raise NearCacheError(status, body)
        version = json.loads(body)["version"]
        self._invalidate(key, version)
        return version

    def delete(self, key):
        """Delete `key` in sqlcached; True if it existed. Drops the entry."""
        self._check_key(key)
        status, _, body = self._request("DELETE", self._kv_path(key))
        if status not in (204, 404):
            raise NearCacheError(status, body)
        self._invalidate(key, _ALWAYS_NEWER, remember=False)
        return status == 204

    def connected(self):
        """Is the stream up (connected and not silent beyond idle_timeout)?"""
        with self._lock:
            return self._stream_up(time.monotonic())

    def wait_connected(self, timeout):
        """Wait up to `timeout` seconds for the stream; returns connected()."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._stream_up(time.monotonic()) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(left, 0.1))
            return self._stream_up(time.monotonic())

    def clear(self):
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def close(self):
        """Stop the stream thread (waits up to 5 s) and drop every entry."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._break_socket()
        self._thread.join(5.0)
        self.clear()

    # Hooks for tests and operations: break the stream once (it reconnects
    # with Last-Event-ID), or keep it down until resume_stream().

    def break_stream(self):
        """Close the stream's connection; it reconnects and resumes."""
        self._break_socket()

    def pause_stream(self):
        """Close the stream and keep it closed until resume_stream()."""
        with self._lock:
            self._paused = True
        self._break_socket()

    def resume_stream(self):
        with self._lock:
            self._paused = False
            self._wake.notify_all()

    # ---- reads through sqlcached -------------------------------------------

    def _fetch(self, key, known_version):
        """GET the key: (value, content type, version); value is None when
        absent, _NOT_MODIFIED when `known_version` is still current."""
        headers = {}
        if known_version is not None:
            headers["If-None-Match"] = '"%d"' % known_version
        status, hdrs, body = self._request("GET", self._kv_path(key), None, headers)
        if status == 304:
            return _NOT_MODIFIED, None, known_version
        if status == 404:
            return None, None, 0
        if status != 200:
            raise NearCacheError(status, body)
        etag = hdrs.get("etag", "").strip('"')
        if not etag.isdigit():
            raise NearCacheError(status, b"answer without a version ETag")
        return body, hdrs.get("content-type"), int(etag)

    def _fill(self, key, value, ctype, version, epoch, counter):
        """End a read through sqlcached: store what it found, unless a
        newer change of the key is known (an event that arrived while it
        ran, or before it: see the top of the file). Leaves the in-flight
        registry under the same lock, so no event slips in between. A 404
        after a known delete is stored as absent at that delete's version.
        Trusted only in the epoch it started in (None: the stream was down,
        so it must be re-validated before use)."""
        with self._lock:
            self.stats[counter] += 1
            newer = self._leave_inflight(key)
            last = self._recent.get(key)
            if last is not None:
                if value is None and last[1]:
                    version = last[0]
                newer = max(newer, last[0])
            entry = self._entries.get(key)
            if newer > version:
                if entry is not None and entry.version < newer:
                    del self._entries[key]
                return
            if entry is not None and entry.version > version:
                return  # a later read already stored something newer
            if epoch != self._epoch or not self._connected:
                epoch = None
            self._entries[key] = _Entry(value, ctype, version, None, epoch, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats["evicted"] += 1

    def _leave_inflight(self, key):
        """(lock held) Unregister a read; the newest event version for the
        key seen while it ran (0 when none)."""
        slot = self._inflight[key]
        slot[0] -= 1
        if slot[0] == 0:
            del self._inflight[key]
        return slot[1]

    def _invalidate(self, key, version, deleted=False, remember=True):
        """A change of `key` at `version` is known: drop an older entry,
        keep reads running now from storing what they found, and (with
        `remember`) keep later reads from storing anything older."""
        with self._lock:
            if remember:
                last = self._recent.pop(key, None)
                if last is None or last[0] <= version:
                    last = (version, deleted)
                self._recent[key] = last
                if len(self._recent) > self._recent_max:
                    self._recent.popitem(last=False)
            entry = self._entries.get(key)
            if entry is not None and entry.version < version:
                del self._entries[key]
                self.stats["invalidated"] += 1
            slot = self._inflight.get(key)
            if slot is not None and slot[1] < version:
                slot[1] = version

    def _trusted(self, entry, now):
        """(lock held) May `entry` be returned without asking sqlcached?"""
        if entry.epoch != self._epoch:
            return False
        if self.max_age is not None and now - entry.stored > self.max_age:
            return False
        return entry.expires_at is None or entry.expires_at > time.time() * 1000

    def _stream_up(self, now):
        """(lock held) Connected, and a byte arrived within idle_timeout."""
        if self._connected and now - self._last_byte > self.idle_timeout:
            # Silent too long: down. The stream thread's read times out and
            # reconnects in a new epoch; until then nothing is trusted.
            self._connected = False
            self.stats["idle_timeouts"] += 1
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return self._connected

    # ---- the change stream -------------------------------------------------

    def _run_stream(self):
        backoff = 0.05
        while True:
            with self._lock:
                while self._paused and not self._closed:
                    self._wake.wait(1.0)
                if self._closed:
                    return
                cursor = self._cursor
            try:
                if self._stream_once(cursor):
                    backoff = 0.05
            except socket.timeout as exc:  # silent for idle_timeout: down
                with self._lock:
                    self.stats["idle_timeouts"] += 1
                    self.last_error = exc
            except Exception as exc:  # noqa: BLE001 - the thread must live on
                with self._lock:
                    self.stats["stream_errors"] += 1
                    self.last_error = exc
            finally:
                self._mark_down()
            with self._lock:
                if not self._closed and not self._paused:
                    self._wake.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _stream_once(self, cursor):
        """Open the stream (resuming after `cursor`) and apply its events
        until it ends. True when it was connected."""
        conn = self._connection(self.idle_timeout)
        try:
            conn.connect()
            with self._lock:
                if self._closed or self._paused:
                    return False
                self._sock = conn.sock
            headers = {"Accept": "text/event-stream"}
            if cursor is not None:
                headers["Last-Event-ID"] = str(cursor)
            conn.request("GET", self._base_path + "/v1/watch?prefix=" +
                         urllib.parse.quote(self.prefix, safe=""),
                         headers=self._auth(headers))
            resp = conn.getresponse()
            if resp.status == 410:
                self._on_truncated(resp.read())
                return True
            if resp.status != 200:
                raise NearCacheError(resp.status, resp.read())
            self._mark_up(cursor)
            self._start_preload()
            self._read_events(resp)
            return True
        finally:
            with self._lock:
                self._sock = None
            conn.close()

    def _read_events(self, resp):
        """Parse Server-Sent Events until the stream ends."""
        event_id, event, data = None, None, []
        while True:
            line = resp.readline()
            if not line:
                return  # closed by the server (or by break_stream)
            with self._lock:
                self._last_byte = time.monotonic()
                self._wake.notify_all()
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    self._apply_event(event or "message", event_id, "\n".join(data))
                event_id, event, data = None, None, []
                continue
            if line.startswith(":"):
                continue  # a keep-alive comment
            name, _, val = line.partition(":")
            val = val[1:] if val.startswith(" ") else val
            if name == "id":
                event_id = val
            elif name == "event":
                event = val
            elif name == "data":
                data.append(val)

    def _apply_event(self, kind, event_id, data):
        """One change: invalidate the key, note an expiry, move the cursor."""
        body = json.loads(data)
        key, version = body["key"], int(body["version"])
        self._invalidate(key, version, deleted=kind in ("delete", "expire"))
        with self._lock:
            entry = self._entries.get(key)
            if kind == "put" and entry is not None and entry.version == version:
                entry.expires_at = body.get("expires_at")
            self._cursor = int(event_id) if event_id else version
            self.stats["events"] += 1

    def _mark_up(self, cursor):
        with self._lock:
            self._epoch += 1
            self._connected = True
            self._last_byte = time.monotonic()
            self.stats["connects"] += 1
            if cursor is not None:
                self.stats["resumes"] += 1
            self._wake.notify_all()

    def _mark_down(self):
        with self._lock:
            self._connected = False

    def _on_truncated(self, body):
        """410: the history no longer reaches our cursor. Drop everything
        and watch from now (then re-list when preloading)."""
        try:
            oldest = json.loads(body).get("oldest")
        except ValueError:
            oldest = None
        with self._lock:
            self._entries.clear()
            self._cursor = None
            self.stats["truncated"] += 1
            self.last_oldest = oldest
            self._preload_due = self.preload

    def _start_preload(self):
        """After a (re)connect that follows the start or a 410, load the
        prefix in a thread of its own (the stream keeps being read)."""
        with self._lock:
            due, self._preload_due = self._preload_due, False
        if due:
            threading.Thread(target=self._preload, name="near-cache-preload",
                             daemon=True).start()

    def _preload(self):
        try:
            self.load_prefix()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.last_error = exc

    def _break_socket(self):
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- preload -----------------------------------------------------------

    def load_prefix(self, limit=1000):
        """List the prefix (GET /v1/kv?prefix=) and read up to `limit` keys
        through the cache; returns how many were read."""
        count, after = 0, None
        while count < limit:
            q = {"prefix": self.prefix, "limit": str(min(1000, limit - count))}
            if after is not None:
                q["after"] = after
            status, _, body = self._request("GET", self._base_path + "/v1/kv?" +
                                            urllib.parse.urlencode(q))
            if status != 200:
                raise NearCacheError(status, body)
            page = json.loads(body)
            for key in page["keys"]:
                self.get_versioned(key)
                count += 1
            after = page.get("next")
            if after is None or not page["keys"]:
                break
        with self._lock:
            self.stats["preloaded"] += count
        return count

    # ---- HTTP --------------------------------------------------------------

    def _connection(self, timeout):
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _auth(self, headers):
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        return headers

    def _request(self, method, path, body=None, headers=None):
        """One request: (status, headers, body). A GET uses this thread's
        kept-alive connection (retried once on a fresh one when the kept
        one was closed meanwhile); a write always opens a fresh one, so it
        is never sent twice."""
        headers = self._auth(dict(headers or {}))
        if method != "GET":
            conn = self._connection(self.timeout)
            try:
                return self._exchange(conn, method, path, body, headers)
            finally:
                conn.close()
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._connection(self.timeout)
            try:
                return self._exchange(conn, method, path, body, headers)
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if not reused or attempt == 2:
                    raise

    @staticmethod
    def _exchange(conn, method, path, body, headers):
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def _kv_path(self, key):
        return self._base_path + "/v1/kv/" + urllib.parse.quote(key, safe="")

    def _check_key(self, key):
        if not key.startswith(self.prefix):
            raise ValueError("key %r is outside the watched prefix %r" % (key, self.prefix))


_NOT_MODIFIED = object()


def _demo(base_url, prefix):
    """Read a key twice (a miss, then a hit), change it behind the cache's
    back, and show the stream invalidating it."""
    key = prefix + "demo"
    cache = NearCache(base_url, prefix=prefix, token=os.environ.get("SQLCACHED_AUTH_TOKEN"))
    try:
        if not cache.wait_connected(5):
            print("stream not connected (GET /v1/watch): reads go through sqlcached")
        other = NearCache(base_url, prefix=prefix, token=os.environ.get("SQLCACHED_AUTH_TOKEN"))
        try:
            other.put(key, "one")
            print("get ->", cache.get(key), dict(cache.stats))
            print("get ->", cache.get(key), dict(cache.stats))
            version = other.put(key, "two")  # another client writes
            deadline = time.monotonic() + 2
            while cache.stats["invalidated"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            print("after put v%d: get ->" % version, cache.get(key), dict(cache.stats))
            other.delete(key)
        finally:
            other.close()
    finally:
        cache.close()


def main(argv):
    ap = argparse.ArgumentParser(description="sqlcached near cache example")
    ap.add_argument("--demo", metavar="URL", required=True, help="sqlcached base URL")
    ap.add_argument("--prefix", default="near-cache-demo:")
    args = ap.parse_args(argv)
    _demo(args.demo, args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
