/*
 * embed.c - the embedded use case, built against an installed libsqlcached
 * by tests/install_test.sh (make install into a DESTDIR) and
 * tests/deb_test.sh (the Debian packages): open a store in-process on the
 * file named last on the command line, put, get, close. Exit 0 when the
 * value read back is the one written.
 */
#include <sqlcached.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = argv[argc - 1];
    sqlcached_t *db;
    char err[256];
    if (sqlcached_open(&o, &db, err, sizeof err) != SQLCACHED_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    sqlcached_value_t *v = NULL;
    int ok = sqlcached_kv_put(db, "k", 1, "embedded", 8, NULL, NULL) == SQLCACHED_OK &&
             sqlcached_kv_get(db, "k", 1, &v) == SQLCACHED_OK && v->len == 8 &&
             memcmp(v->data, "embedded", 8) == 0;
    sqlcached_value_release(v);
    sqlcached_close(db);
    puts(ok ? "embedded ok" : "embedded FAILED");
    return ok ? 0 : 1;
}
