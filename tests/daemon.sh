# tests/daemon.sh - shell helpers for the test scripts that run the daemon
# themselves (sourced, POSIX sh): find the port it listens on, stop it.
# The daemon is started with --listen 127.0.0.1:0 (it picks a free port and
# logs it); every wait is bounded.

# daemon_port LOG PID: print the port the daemon with pid PID logged in LOG
# ("listening on http://127.0.0.1:PORT"), waiting up to 10 s; prints
# nothing when it did not start in time or exited first.
daemon_port() {
    _dp_port=""
    for _ in $(seq 1 100); do
        _dp_port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$1" |
                   head -n 1)
        [ -n "$_dp_port" ] && break
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    printf '%s' "$_dp_port"
}

# daemon_stop PID: SIGTERM, wait up to 10 s for the exit, then SIGKILL, and
# reap it. Nothing to do when it is gone already.
daemon_stop() {
    kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
