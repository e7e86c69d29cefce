#!/usr/bin/env python3
"""watch-bench.py - figures of the watch (docs/watch.md), Python standard
library only, against daemons it starts itself (127.0.0.1, port 0, a
temporary SQLite database, stopped by PID).

  watch-bench.py latency N      time from a PUT's answer to its event at the
                                watchers, with N streams open (p50/p99 at one
                                watcher and at the last of all N)
  watch-bench.py memory N       RSS of the daemon with N idle streams, per stream
  watch-bench.py throughput [BASELINE_BIN]
                                PUT/s at 64 connections (wrk, bench/kv-put.lua),
                                runs alternating: 0 watchers, 100 watchers of
                                every key (reading every event), 100 watchers of
                                a prefix no write matches (and BASELINE_BIN, a daemon without the change
                                log, when given), 3 rounds of 5 s each

Environment: SQLCACHED_BIN (default src/sqlcached), BENCH_DURABILITY
(default normal).
"""
import os, re, selectors, signal, socket, subprocess, sys, tempfile, time, http.client, json

BIN = os.environ.get("SQLCACHED_BIN", "src/sqlcached")
DURABILITY = os.environ.get("BENCH_DURABILITY", "normal")
HERE = os.path.dirname(os.path.abspath(__file__))


class Daemon:
    def __init__(self, binary=BIN, extra=()):
        self.dir = tempfile.mkdtemp(prefix="sqlcached-watch-bench-")
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--db",
                                   os.path.join(self.dir, "db"), "--durability", DURABILITY,
                                   *(["--max-watchers", "5000"] if binary == BIN else []),
                                   *extra],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            time.sleep(0.1)
            self.log.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.port = int(m.group(1))
                return
        raise SystemExit("the daemon did not start")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        subprocess.run(["rm", "-rf", self.dir])

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def stream(port, prefix=""):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /v1/watch?prefix={prefix} HTTP/1.0\r\nHost: b\r\n\r\n".encode())
    s.setblocking(False)
    return s


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def latency(n, count=200):
    d = Daemon()
    try:
        socks = [stream(d.port) for _ in range(n)]
        sel = selectors.DefaultSelector()
        bufs = {}
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
            bufs[i] = b""
        seen = {}  # version -> [arrival at watcher 0, arrivals count, last arrival]

        def pump(until):
            while time.monotonic() < until:
                for key, _ in sel.select(timeout=max(0, until - time.monotonic())):
                    i = key.data
                    data = key.fileobj.recv(1 << 16)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    now = time.monotonic()
                    bufs[i] += data
                    *events, bufs[i] = bufs[i].split(b"\n\n")
                    for e in events:
                        m = re.search(rb"^id: (\d+)", e, re.M)
                        if m:
                            v = int(m.group(1))
                            r = seen.setdefault(v, [None, 0, 0])
                            if i == 0:
                                r[0] = now
                            r[1] += 1
                            r[2] = now

        pump(time.monotonic() + 1.0 + n / 500)  # the streams open
        conn = http.client.HTTPConnection("127.0.0.1", d.port)
        answered = {}
        for k in range(count):
            conn.request("PUT", f"/v1/kv/lat:{k % 10}", body=b"v" * 100)
            r = conn.getresponse()
            body = r.read()
            answered[json.loads(body)["version"]] = time.monotonic()
            v = json.loads(body)["version"]
            until = time.monotonic() + 5
            while (v not in seen or seen[v][1] < n) and time.monotonic() < until:
                pump(min(until, time.monotonic() + 0.005))
        one = [max(0.0, seen[v][0] - t) * 1000 for v, t in answered.items() if v in seen and seen[v][0]]
        last = [max(0.0, seen[v][2] - t) * 1000 for v, t in answered.items() if v in seen and seen[v][1] == n]
        print(f"latency, {n} watcher(s), {count} PUTs one at a time: "
              f"one watcher p50 {pct(one, 50):.2f} ms p99 {pct(one, 99):.2f} ms; "
              f"all {n} watchers p50 {pct(last, 50):.2f} ms p99 {pct(last, 99):.2f} ms; "
              f"events complete for {len(last)}/{count}")
        for s in socks:
            s.close()
    finally:
        d.stop()


def memory(n):
    d = Daemon()
    try:
        time.sleep(0.5)
        before = d.rss_kib()
        socks = [stream(d.port) for _ in range(n)]
        time.sleep(2 + n / 500)
        after = d.rss_kib()
        print(f"memory: RSS {before} KiB idle, {after} KiB with {n} idle streams: "
              f"{(after - before) * 1024 / n:.0f} bytes per stream")
        for s in socks:
            s.close()
    finally:
        d.stop()


def wrk_rate(port, seconds=5):
    out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", "-s",
                          os.path.join(HERE, "kv-put.lua"), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def drain(socks, seconds):
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for key, _ in sel.select(timeout=0.1):
            if not key.fileobj.recv(1 << 16):
                sel.unregister(key.fileobj)


def throughput(baseline=None):
    import threading
    d = Daemon()
    try:
        b = Daemon(baseline) if baseline else None
    except BaseException:
        d.stop()
        raise
    rows = {"0 watchers": [], "100 watchers (every write)": [],
            "100 watchers (prefix no write matches)": []}
    if b:
        rows["baseline (no change log), 0 watchers"] = []
    try:
        for rnd in range(3):
            rows["0 watchers"].append(wrk_rate(d.port))
            socks = [stream(d.port) for _ in range(100)]
            t = threading.Thread(target=drain, args=(socks, 6.5))
            t.start()
            time.sleep(0.5)
            rows["100 watchers (every write)"].append(wrk_rate(d.port))
            t.join()
            for s in socks:
                s.close()
            socks = [stream(d.port, "other:") for _ in range(100)]
            time.sleep(0.5)
            rows["100 watchers (prefix no write matches)"].append(wrk_rate(d.port))
            for s in socks:
                s.close()
            if b:
                rows["baseline (no change log), 0 watchers"].append(wrk_rate(b.port))
        for k, v in rows.items():
            print(f"PUT/s at 64 connections, {k}: " + ", ".join(f"{x:.0f}" for x in v) +
                  f" (mean {sum(v) / len(v):.0f})")
    finally:
        d.stop()
        if b:
            b.stop()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    what = sys.argv[1]
    if what == "latency":
        latency(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    elif what == "memory":
        memory(int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    elif what == "throughput":
        throughput(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        raise SystemExit(__doc__)
