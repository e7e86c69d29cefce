/*
 * pg.c - see pg.h. Runs scripts/pg-cluster with fork/exec (no shell
 * command line is built) and reads the URL it prints.
 */
#include "pg.h"
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SCRIPT_TIMEOUT_MS 180000 /* the script bounds its own waits well below */

int pg_fixture_skip(void)
{
    const char *v = getenv("SQLCACHED_TEST_NO_PG");
    if (v && strcmp(v, "1") == 0) {
        printf("SQLCACHED_TEST_NO_PG=1: PostgreSQL tests skipped\n");
        return 1;
    }
    return 0;
}

/* Read the child's stdout into out until EOF or the deadline. */
static void read_output(int fd, char *out, size_t outlen, int64_t deadline)
{
    size_t used = 0;
    for (;;) {
        int left = (int)(deadline - testutil_mono_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        char buf[256];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
        memcpy(out + used, buf, take);
        used += take;
    }
    out[used] = '\0';
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r'))
        out[--used] = '\0';
}

/* Run `sh scripts/pg-cluster CMD DIR`; its stdout (first line) into out.
 * Returns its exit status, or -1. */
static int run_script(const char *cmd, const char *dir, char *out, size_t outlen)
{
    const char *src = getenv("SQLCACHED_SRCDIR");
    char script[1024];
    snprintf(script, sizeof script, "%s/scripts/pg-cluster", src && *src ? src : ".");
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        char owner[32];
        snprintf(owner, sizeof owner, "%ld", (long)getppid());
        setenv("SQLCACHED_PG_OWNER", owner, 1); /* see the watchdog in the script */
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", script, cmd, dir, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    int64_t deadline = testutil_mono_ms() + SCRIPT_TIMEOUT_MS;
    char scratch[8];
    read_output(fds[0], out ? out : scratch, out ? outlen : sizeof scratch, deadline);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (testutil_mono_ms() > deadline) {
            fprintf(stderr, "pg fixture: %s %s still running; killed\n", script, cmd);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(10000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int pg_fixture_start(pg_fixture_t *f)
{
    memset(f, 0, sizeof *f);
    f->dir = testutil_mkdtemp();
    if (!f->dir) {
        fprintf(stderr, "pg fixture: cannot make a temporary directory\n");
        return -1;
    }
    int rc = run_script("start", f->dir, f->url, sizeof f->url);
    if (rc != 0 || strncmp(f->url, "postgresql://", 13) != 0) {
        fprintf(stderr, "pg fixture: scripts/pg-cluster start failed (exit %d)%s\n", rc,
                rc == 2 ? ": the PostgreSQL binaries are missing (see above)" : "");
        run_script("remove", f->dir, NULL, 0);
        free(f->dir);
        f->dir = NULL;
        return -1;
    }
    return 0;
}

int pg_fixture_server_stop(pg_fixture_t *f)
{
    return f->dir && run_script("stop", f->dir, NULL, 0) == 0 ? 0 : -1;
}

int pg_fixture_server_start(pg_fixture_t *f)
{
    char url[256];
    if (!f->dir || run_script("start", f->dir, url, sizeof url) != 0)
        return -1;
    return strcmp(url, f->url) == 0 ? 0 : -1;
}

int pg_fixture_new_db(pg_fixture_t *f, char *url, size_t len)
{
    if (!f->dir || run_script("newdb", f->dir, url, len) != 0 ||
        strncmp(url, "postgresql://", 13) != 0)
        return -1;
    f->dbs++;
    return 0;
}

int pg_fixture_stop(pg_fixture_t *f)
{
    if (!f->dir)
        return 0;
    int rc = run_script("remove", f->dir, NULL, 0);
    if (rc != 0)
        fprintf(stderr, "pg fixture: scripts/pg-cluster remove %s failed (exit %d)\n", f->dir, rc);
    free(f->dir);
    f->dir = NULL;
    return rc == 0 ? 0 : -1;
}
