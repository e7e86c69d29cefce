#!/usr/bin/env python3
"""Check docs/examples/near-cache.py against a running sqlcached.

Writers change keys with plain PUT/DELETE while readers read them through
the near cache. Every key has one writer, so its writes are totally ordered
by that writer (each is answered before the next starts); every write is
logged with its start and its acknowledgement, every read with its start,
its end and what it returned; after each phase's load, with no writes for
longer than the bound, every key is read once more. A read that returned
write i of a key is stale by (read start - ack of write i+1) when write
i+1 was acknowledged before the read started; the bound checked is 500 ms.
A read returning a value never written, or written only after the read
ended, fails at once.

Phases: (a) stream connected, broken twice on purpose (it resumes with
Last-Event-ID); (b) stream held down: reads must go to sqlcached (no hit
counted, no staleness); (c) with --history N (the daemon's small
--watch-history), N+50 writes while the stream is down, a wait until the
daemon trimmed its history (in the background, every few seconds), so the
resume gets 410; the cache must drop everything, reconnect, list and load
the prefix again (preload) and keep the bound;
(d) a second cache with idle_timeout 1 s and no writes at all: the silent
stream must count as down, and its entry must be re-validated; (e) the
daemon stopped: a read must fail rather than answer from memory; restarted
on the same port and database: the stream resumes, the bound holds.

NEAR_CACHE_SABOTAGE=no-invalidate (events not applied), trust-when-down
(entries trusted while the stream is down) or no-idle (a silent stream
never counts as down) must make it fail.

Exit status: 0 pass, 1 fail, 77 skip (the daemon has no GET /v1/watch).
"""

import argparse
import bisect
import http.client
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

BOUND = 0.5
PREFIX = "nc:"


def load_example(srcdir):
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    path = os.path.join(srcdir, "docs", "examples", "near-cache.py")
    spec = importlib.util.spec_from_file_location("near_cache", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EVENTS = {}  # version -> when its event reached the cache (monotonic)


def recording(cls):
    """`cls` noting when each event arrives, to explain a stale read."""
    class Recording(cls):
        def _apply_event(self, kind, event_id, data):
            EVENTS.setdefault(int(event_id), time.monotonic())
            super()._apply_event(kind, event_id, data)
    return Recording


def sabotaged(mod, how):
    """The NearCache class, or a subclass broken on purpose."""
    if how == "no-invalidate":
        class NoInvalidate(mod.NearCache):
            def _apply_event(self, kind, event_id, data):
                with self._lock:
                    self._cursor = int(event_id)
                    self.stats["events"] += 1
        return NoInvalidate
    if how == "trust-when-down":
        class TrustWhenDown(mod.NearCache):
            def _stream_up(self, now):
                return True
        return TrustWhenDown
    if how == "no-idle":
        class NoIdle(mod.NearCache):
            def _connection(self, timeout):  # the stream never times out
                return super()._connection(None if timeout == self.idle_timeout else timeout)

            def _stream_up(self, now):
                return self._connected
        return NoIdle
    if how:
        raise SystemExit("unknown NEAR_CACHE_SABOTAGE=%s" % how)
    return mod.NearCache


class Daemon:
    """src/sqlcached on 127.0.0.1, a free port, a temporary database;
    stopped by its PID. restart() starts it again on the same port and
    database."""

    def __init__(self, binary, extra, db=None):
        self.binary, self.extra = binary, extra
        self.dir = tempfile.TemporaryDirectory(prefix="sqlcached-near-cache-")
        self.db = db or os.path.join(self.dir.name, "db")
        self.log_path = os.path.join(self.dir.name, "daemon.log")
        self.log = None
        self.port = self._start(0)

    def _start(self, port):
        self.log = open(self.log_path, "a")
        start = self.log.tell()
        self.proc = subprocess.Popen([self.binary, "--listen", "127.0.0.1:%d" % port,
                                      "--db", self.db] + self.extra,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            return self._wait_port(start)
        except BaseException:
            self.stop()
            raise

    def _wait_port(self, start):
        """The port the daemon logged after offset `start`, within 10 s."""
        for _ in range(100):
            with open(self.log_path) as f:
                f.seek(start)
                m = re.search(r"listening on http://127\.0\.0\.1:([0-9]+)", f.read())
                if m:
                    return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise SystemExit("near_cache_example: the daemon did not start in 10 s:\n" + self.tail())

    def restart(self):
        self.stop()
        self._start(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log:
            self.log.close()
            self.log = None

    def tail(self):
        with open(self.log_path) as f:
            return f.read()[-2000:]


class Client:
    """Plain HTTP on one kept-alive connection (one per thread)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None):
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request(method, path, body=body)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise


class Log:
    """Writes per key (value or None, started, acknowledged), reads."""

    def __init__(self, keys):
        self.writes = {k: [(None, float("-inf"), float("-inf"), None)] for k in keys}
        self.present = {k: False for k in keys}
        self.reads = []
        self.lock = threading.Lock()
        self.seq = 0


def writer(port, keys, log, stop, pause):
    cl = Client(port)
    rnd = random.Random()
    while not stop.is_set():
        key = rnd.choice(keys)
        with log.lock:
            log.seq += 1
            value = "%s|%d" % (key, log.seq)
        delete = log.present[key] and rnd.random() < 0.1
        t0 = time.monotonic()
        if delete:
            status, body = cl.request("DELETE", "/v1/kv/" + key)
            ok = status == 204
        else:
            status, body = cl.request("PUT", "/v1/kv/" + key, value.encode())
            ok = status in (200, 201)
        t1 = time.monotonic()
        if not ok:
            raise RuntimeError("write %s answered %d %r" % (key, status, body))
        with log.lock:
            log.writes[key].append((None if delete else value, t0, t1,
                                    None if delete else json.loads(body)["version"]))
        log.present[key] = not delete
        if pause:
            time.sleep(pause * rnd.random() * 2)


def reader(cache, keys, log, stop, phase):
    rnd = random.Random()
    out = []
    try:
        while not stop.is_set():
            key = rnd.choice(keys)
            t0 = time.monotonic()
            value = cache.get(key)
            t1 = time.monotonic()
            out.append((key, t0, t1, None if value is None else value.decode(), phase))
            time.sleep(0.001)  # an application does some work between reads
    finally:
        with log.lock:
            log.reads.extend(out)


class LoadError(Exception):
    """A writer or reader failed (an error answer, an exception)."""


def run_load(cache, port, log, keys, seconds, phase, writers=2, readers=4, pause=0.02,
             during=None):
    """Writers and readers for `seconds` (`during(elapsed)` is called every
    0.1 s from this thread), then, with no writes for the bound, one read
    of every key."""
    stop = threading.Event()
    errors = []

    def guarded(fn, *a):
        try:
            fn(*a)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append("%s: %r" % (fn.__name__, exc))
            stop.set()
    per = len(keys) // writers
    threads = [threading.Thread(target=guarded, args=(writer, port, keys[i * per:(i + 1) * per],
                                                      log, stop, pause))
               for i in range(writers)]
    threads += [threading.Thread(target=guarded, args=(reader, cache, keys, log, stop, phase))
                for _ in range(readers)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(0.1)
        if during:
            during(time.monotonic() - start)
    stop.set()
    for t in threads:
        t.join(15)
        if t.is_alive():
            errors.append("a load thread did not stop in 15 s")
    if errors:
        raise LoadError("phase (%s): %s" % (phase, "; ".join(errors)))
    # Quiet: past the bound, every key must read as its last write (an
    # entry stored stale and never invalidated again shows here).
    time.sleep(BOUND + 0.1)
    with log.lock:
        for key in keys:
            t0 = time.monotonic()
            value = cache.get(key)
            log.reads.append((key, t0, time.monotonic(),
                              None if value is None else value.decode(), phase))


def staleness(log, phase):
    """(largest staleness in s, reads checked, errors) of a phase's reads."""
    index = {}  # key -> ({value: write index}, [start of each delete], [its index])
    for key, ws in log.writes.items():
        values, nstart, nidx = {}, [], []
        for i, (v, ts, _, _) in enumerate(ws):
            if v is None:
                nstart.append(ts)
                nidx.append(i)
            else:
                values[v] = i
        index[key] = (values, nstart, nidx)
    worst, count, errors, detail = 0.0, 0, [], ""
    for key, t0, t1, value, ph in log.reads:
        if ph != phase:
            continue
        count += 1
        ws = log.writes[key]
        values, nstart, nidx = index[key]
        if value is None:  # the latest delete (or the start) begun before the read ended
            n = bisect.bisect_right(nstart, t1)
            i = nidx[n - 1] if n else None
        else:
            i = values.get(value)
            if i is not None and ws[i][1] > t1:
                i = None
        if i is None:
            errors.append("read of %s returned %r, never written before it" % (key, value))
            continue
        if i + 1 < len(ws) and ws[i + 1][2] < t0 and t0 - ws[i + 1][2] > worst:
            worst = t0 - ws[i + 1][2]
            detail = explain(key, ws[i + 1], t0)
    return worst, count, errors, detail


def explain(key, newer, t0):
    """Where the time went for the stalest read: when the event of the
    write it missed reached the cache."""
    version, ack = newer[3], newer[2]
    if version is None:
        return "%s missed a DELETE (no version to follow)" % key
    seen = EVENTS.get(version)
    if seen is None:
        return "%s missed version %d, whose event had not reached the cache" % (key, version)
    return ("%s missed version %d, whose event reached the cache %.1f ms after the write's "
            "answer, %.1f ms %s the read began"
            % (key, version, (seen - ack) * 1000, abs(t0 - seen) * 1000,
               "before" if seen < t0 else "after"))


def wait_until(pred, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def watch_status(port, since=None):
    """The status GET /v1/watch answers (the stream is then closed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/watch?prefix=" + PREFIX +
                     ("" if since is None else "&since=%d" % since))
        return conn.getresponse().status
    finally:
        conn.close()


def check(label, worst, count, errors, detail, failures):
    print("near_cache_example: %s: %d reads, largest staleness %.1f ms%s"
          % (label, count, worst * 1000, " (%s)" % detail if detail else ""))
    failures.extend("%s: %s" % (label, e) for e in errors[:5])
    if count == 0:
        failures.append("%s: no reads" % label)
    if worst > BOUND:
        failures.append("%s: a read was %.1f ms stale (bound %d ms)"
                        % (label, worst * 1000, BOUND * 1000))


def idle_phase(cls, port, key):
    """(d) A stream silent for longer than idle_timeout counts as down: a
    cache with idle_timeout 1 s (below the daemon's keep-alive interval)
    must stop trusting its entry within a few seconds of silence."""
    cache = cls("http://127.0.0.1:%d" % port, prefix=PREFIX, idle_timeout=1.0)
    try:
        if not cache.wait_connected(5):
            return ["(d): the stream did not connect in 5 s"]
        cache.get(key)
        cache.get(key)
        if cache.stats["hits"] != 1:
            return ["(d): no hit on the second read (%s)" % dict(cache.stats)]
        if not wait_until(lambda: cache.stats["idle_timeouts"] >= 1, 20):
            return ["(d): 20 s of silence and the stream still counts as up"]
        cache.get(key)
        print("near_cache_example: (d) silent stream: down after idle_timeout, read "
              "re-validated (stats %s)" % dict(cache.stats))
        if cache.stats["hits"] != 1:
            return ["(d): a read trusted the cache after the stream went silent"]
        return []
    finally:
        cache.close()


def restart_phase(cache, daemon, wport, log, keys):
    """(e) The daemon stops (the stream closes): a read must not be answered
    from memory; after a restart on the same port and database, the stream
    resumes and the bound holds again."""
    failures = []
    for key in keys:
        cache.get(key)
    resumes = cache.stats["resumes"]
    daemon.stop()
    if not wait_until(lambda: not cache.connected(), 5):
        failures.append("(e): the stream still counts as up with the daemon stopped")
    try:
        cache.get(keys[0])
        failures.append("(e): a read was answered from memory with sqlcached stopped")
    except OSError:
        pass
    daemon.restart()
    if not cache.wait_connected(10):
        return failures + ["(e): the stream did not reconnect after the restart"]
    run_load(cache, wport, log, keys, 2, "e")
    check("(e) after a restart", *staleness(log, "e"), failures)
    if cache.stats["resumes"] <= resumes:
        failures.append("(e): the stream did not resume with Last-Event-ID")
    return failures


def run(args, wport, port, daemon):
    """The phases; writers write to wport, the cache reads from port (a
    second node of the cluster, or the same daemon), run by `daemon`."""
    mod = load_example(args.srcdir)
    cls = recording(sabotaged(mod, os.environ.get("NEAR_CACHE_SABOTAGE", "")))
    cache = cls("http://127.0.0.1:%d" % port, prefix=PREFIX, idle_timeout=20.0, preload=True)
    failures = []
    try:
        if not cache.wait_connected(5):
            return ["the stream did not connect in 5 s: %r" % cache.last_error]
        keys = ["%sk%02d" % (PREFIX, i) for i in range(16)]
        log = Log(keys)

        # (a) connected; the stream broken twice, resuming each time.
        breaks = []

        def breaker(elapsed):
            if len(breaks) < 2 and elapsed > 1.5 * (len(breaks) + 1):
                breaks.append(elapsed)
                cache.break_stream()
        run_load(cache, wport, log, keys, args.seconds, "a", during=breaker)
        check("(a) connected", *staleness(log, "a"), failures)
        hits_a = cache.stats["hits"]
        if hits_a < 0.2 * sum(1 for r in log.reads if r[4] == "a"):
            failures.append("(a): only %d hits: the cache hardly caches" % hits_a)
        if cache.stats["resumes"] < 2:
            failures.append("(a): %d resumes after 2 breaks" % cache.stats["resumes"])

        # (b) stream held down: everything read through or re-validated.
        cache.pause_stream()
        if not wait_until(lambda: not cache.connected(), 5):
            failures.append("(b): the stream did not go down")
        hits_b = cache.stats["hits"]
        run_load(cache, wport, log, keys, 2, "b")
        check("(b) stream down", *staleness(log, "b"), failures)
        if cache.stats["hits"] != hits_b and not os.environ.get("NEAR_CACHE_SABOTAGE"):
            failures.append("(b): %d reads trusted the cache while the stream was down"
                            % (cache.stats["hits"] - hits_b))

        # (c) history overrun while down: 410 on resume, then recovery.
        if args.history:
            cl = Client(wport)
            for n in range(args.history + 50):
                key = keys[n % 8]  # writer 0's keys; the log keeps their order
                value = "%s|c%d" % (key, n)
                t0 = time.monotonic()
                status, body = cl.request("PUT", "/v1/kv/" + key, value.encode())
                if status not in (200, 201):
                    return failures + ["(c): PUT answered %d %r" % (status, body)]
                log.writes[key].append((value, t0, time.monotonic(), json.loads(body)["version"]))
                log.present[key] = True
            # The daemon trims its history in the background: wait (up to
            # 15 s) until the cache's cursor is out of it, then resume.
            with cache._lock:
                cursor = cache._cursor
            if cursor is None or not wait_until(lambda: watch_status(port, cursor) == 410, 15):
                failures.append("(c): the history was not trimmed past the cursor %r" % cursor)
            cache.resume_stream()
            if not wait_until(lambda: cache.stats["truncated"] >= 1, 10):
                failures.append("(c): no 410 after %d writes over a history of %d"
                                % (args.history + 50, args.history))
            if not cache.wait_connected(10):
                failures.append("(c): the stream did not reconnect after the 410")
            if not wait_until(lambda: cache.stats["preloaded"] >= len(keys) // 2, 10):
                failures.append("(c): the prefix was not listed and loaded again after the 410 "
                                "(%d keys)" % cache.stats["preloaded"])
            run_load(cache, wport, log, keys, 2, "c")
            check("(c) after 410", *staleness(log, "c"), failures)
        else:
            cache.resume_stream()
            print("near_cache_example: (c) skipped: no small --watch-history")

        failures += idle_phase(cls, port, keys[0])
        if daemon:
            failures += restart_phase(cache, daemon, wport, log, keys)
        worst = max(staleness(log, p)[0] for p in "abce")
        print("near_cache_example: largest staleness observed: %.1f ms over %d reads "
              "(stats %s)" % (worst * 1000, len(log.reads), dict(cache.stats)))
        return failures
    finally:
        cache.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SQLCACHED_BIN", "src/sqlcached"))
    ap.add_argument("--srcdir", default=os.environ.get("SQLCACHED_SRCDIR",
                                                       os.path.join(os.path.dirname(__file__), "..")))
    ap.add_argument("--url-port", type=int, help="use the server on this port instead")
    ap.add_argument("--history", type=int, default=300,
                    help="--watch-history for the daemon (0: no phase c)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--db", help="the daemons' --db (default: a temporary SQLite file)")
    ap.add_argument("--nodes", type=int, choices=(1, 2), default=1,
                    help="2: writers on one node, the near cache on another (needs a "
                         "PostgreSQL --db)")
    args = ap.parse_args()

    daemons = []
    try:
        if args.url_port:
            port = wport = args.url_port
        else:
            helptext = subprocess.run([args.bin, "--help"], capture_output=True, text=True,
                                      timeout=10).stdout
            extra = []
            if args.history and "--watch-history" in helptext:
                extra = ["--watch-history", str(args.history)]
            else:
                args.history = 0
            for _ in range(args.nodes):
                daemons.append(Daemon(args.bin, extra, args.db))
            wport, port = daemons[0].port, daemons[-1].port
            if args.nodes == 2:
                print("near_cache_example: writers on node :%d, the near cache on node :%d"
                      % (wport, port))
        status = watch_status(port)
        if status == 404:
            print("near_cache_example: skipped: GET /v1/watch answers 404 (this daemon has "
                  "no change stream)")
            return 77
        try:
            failures = run(args, wport, port, daemons[-1] if daemons else None)
        except LoadError as exc:
            failures = [str(exc)]
    finally:
        for d in daemons:
            d.stop()
    if failures:
        for f in failures:
            print("near_cache_example: FAIL " + f, file=sys.stderr)
        for d in daemons:
            print(d.tail(), file=sys.stderr)
        return 1
    print("near_cache_example: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
