/*
 * test_kv_tier.c - the key-value read and write paths through the memory
 * tier (src/kv.c with src/cache.c and src/bloom.c): hits, negative entries
 * and the bloom filter invalidated by writes, single-flight, the stale-fill
 * race (deterministic, and under concurrency), and memory never above the
 * limit; the write-path tests in both --on-write modes (replace, the
 * default, and invalidate); a sliding key's entry, whose expiry follows the
 * row's (with a fake clock).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlcached.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    sqlcached_t *db;
    /* the race seam */
    int race_armed;
    int64_t race_version;
} fixture_t;

static sqlcached_t *open_with(fixture_t *f, void (*tweak)(sqlcached_options_t *, fixture_t *))
{
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    if (tweak)
        tweak(&o, f);
    return testutil_open_opts(f->dir, "tier.db", &o);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->db = open_with(f, NULL);
    *state = f;
    return f->db ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static sqlcached_stats_t stats(sqlcached_t *db)
{
    sqlcached_stats_t s;
    sqlcached_stats(db, &s);
    return s;
}

static void put(sqlcached_t *db, const char *k, const char *v, int64_t *version)
{
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(db, k, strlen(k), v, strlen(v), NULL, &r), SQLCACHED_OK);
    if (version)
        *version = r.version;
}

/* GET k: returns the version (0 when absent) and whether it was a hit. */
static int64_t get(sqlcached_t *db, const char *k, int *hit)
{
    sqlcached_value_t *v = NULL;
    sqlcached_status_t st = sqlcached_kv_get(db, k, strlen(k), &v);
    if (st == SQLCACHED_NOT_FOUND)
        return 0;
    assert_int_equal(st, SQLCACHED_OK);
    int64_t ver = v->version;
    if (hit)
        *hit = v->from_cache;
    sqlcached_value_release(v);
    return ver;
}

static void test_kv_tier_second_read_is_a_hit(void **state)
{
    fixture_t *f = *state;
    int64_t ver;
    int hit = -1;
    put(f->db, "k", "v1", &ver);
    uint64_t reads = stats(f->db).storage_reads;
    assert_int_equal(get(f->db, "k", &hit), ver);
    assert_int_equal(hit, 0);
    assert_int_equal(get(f->db, "k", &hit), ver);
    assert_int_equal(hit, 1);
    assert_int_equal(stats(f->db).storage_reads, reads + 1);
    assert_true(stats(f->db).cache_hits >= 1);
}

/* The value a GET answers, with its content type (NUL-terminated copies). */
static void get_value(sqlcached_t *db, const char *k, char *val, size_t vcap, char *ct,
                      size_t ctcap, int *hit)
{
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(db, k, strlen(k), &v), SQLCACHED_OK);
    assert_true(v->len < vcap);
    memcpy(val, v->data, v->len);
    val[v->len] = '\0';
    snprintf(ct, ctcap, "%s", v->content_type);
    *hit = v->from_cache;
    sqlcached_value_release(v);
}

/* A write of a key the tier holds puts the new value in memory (commit
 * order, in the writer thread): the next read is a hit with the new value,
 * content type and version, and SQLite is not read. */
static void test_kv_tier_write_of_a_cached_key_replaces_it(void **state)
{
    fixture_t *f = *state;
    int64_t ver;
    int hit = -1;
    char val[64], ct[128];
    put(f->db, "k", "v1", &ver);
    assert_int_equal(get(f->db, "k", &hit), ver); /* fills the tier */
    uint64_t reads = stats(f->db).storage_reads;
    sqlcached_put_options_t o = {.content_type = "text/x-new", .ttl_ms = 60000};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "second", 6, &o, &r), SQLCACHED_OK);
    assert_true(r.version > ver);
    get_value(f->db, "k", val, sizeof val, ct, sizeof ct, &hit);
    assert_int_equal(hit, 1);
    assert_string_equal(val, "second");
    assert_string_equal(ct, "text/x-new");
    assert_int_equal(get(f->db, "k", NULL), r.version);
    assert_int_equal(stats(f->db).storage_reads, reads);
    /* incr of a cached counter: the new number, from memory */
    int64_t n, nver;
    put(f->db, "n", "41", NULL);
    assert_true(get(f->db, "n", NULL) > 0);
    reads = stats(f->db).storage_reads;
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, 1, &n, &nver), SQLCACHED_OK);
    assert_int_equal(n, 42);
    get_value(f->db, "n", val, sizeof val, ct, sizeof ct, &hit);
    assert_int_equal(hit, 1);
    assert_string_equal(val, "42");
    assert_int_equal(get(f->db, "n", NULL), nver);
    assert_int_equal(stats(f->db).storage_reads, reads);
    /* DELETE: gone at once */
    assert_int_equal(sqlcached_kv_delete(f->db, "k", 1, NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "k", NULL), 0);
}

static void with_invalidate(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->on_write = SQLCACHED_ON_WRITE_INVALIDATE;
}

/* --on-write invalidate: every write of a cached key (PUT, incr, DELETE)
 * deletes the cached copy; the next read is a miss that reads the store
 * and answers the new value, which the read after it finds in memory. */
static void test_kv_tier_invalidate_mode_write_deletes_the_cached_copy(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, with_invalidate);
    assert_non_null(f->db);
    assert_string_equal(stats(f->db).on_write, "invalidate");
    int64_t ver;
    int hit = -1;
    char val[64], ct[128];
    put(f->db, "k", "v1", &ver);
    assert_int_equal(get(f->db, "k", &hit), ver); /* fills the tier */
    assert_int_equal(get(f->db, "k", &hit), ver);
    assert_int_equal(hit, 1);
    uint64_t reads = stats(f->db).storage_reads;
    sqlcached_put_options_t o = {.content_type = "text/x-new"};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "second", 6, &o, &r), SQLCACHED_OK);
    assert_int_equal(stats(f->db).cache_write_invalidated, 1);
    assert_int_equal(stats(f->db).cache_write_replaced, 0);
    get_value(f->db, "k", val, sizeof val, ct, sizeof ct, &hit);
    assert_int_equal(hit, 0);                                /* a MISS ... */
    assert_int_equal(stats(f->db).storage_reads, reads + 1); /* ... that read the store */
    assert_string_equal(val, "second");
    assert_string_equal(ct, "text/x-new");
    get_value(f->db, "k", val, sizeof val, ct, sizeof ct, &hit);
    assert_int_equal(hit, 1); /* refilled by that read */
    /* incr of a cached counter: a miss, then the new number */
    int64_t n, nver;
    put(f->db, "n", "41", NULL);
    assert_true(get(f->db, "n", NULL) > 0);
    reads = stats(f->db).storage_reads;
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, 1, &n, &nver), SQLCACHED_OK);
    get_value(f->db, "n", val, sizeof val, ct, sizeof ct, &hit);
    assert_int_equal(hit, 0);
    assert_string_equal(val, "42");
    assert_int_equal(stats(f->db).storage_reads, reads + 1);
    assert_int_equal(get(f->db, "n", NULL), nver);
    /* DELETE: gone at once */
    assert_int_equal(sqlcached_kv_delete(f->db, "k", 1, NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "k", NULL), 0);
    assert_int_equal(stats(f->db).cache_write_replaced, 0);
    assert_int_equal(stats(f->db).cache_write_invalidated, 3);
}

/* The replace mode's counters, for comparison: the same writes replace. */
static void test_kv_tier_replace_mode_counts_replacements(void **state)
{
    fixture_t *f = *state;
    assert_string_equal(stats(f->db).on_write, "replace");
    put(f->db, "k", "v1", NULL);
    assert_true(get(f->db, "k", NULL) > 0);
    put(f->db, "k", "v2", NULL);
    assert_int_equal(sqlcached_kv_incr(f->db, "k", 1, 1, NULL, NULL), SQLCACHED_NOT_INTEGER);
    put(f->db, "k", "7", NULL);
    assert_int_equal(sqlcached_kv_incr(f->db, "k", 1, 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(stats(f->db).cache_write_replaced, 3);
    assert_int_equal(stats(f->db).cache_write_invalidated, 0);
    assert_int_equal(sqlcached_kv_delete(f->db, "k", 1, NULL), SQLCACHED_OK);
    assert_int_equal(stats(f->db).cache_write_invalidated, 1);
}

static void test_kv_tier_rejects_unknown_on_write(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = NULL;
    char *path = testutil_path(f->dir, "tier.db");
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = path;
    o.on_write = (sqlcached_on_write_t)7;
    char err[256] = "";
    assert_int_equal(sqlcached_open(&o, &f->db, err, sizeof err), SQLCACHED_INVALID_ARGUMENT);
    assert_null(f->db);
    assert_non_null(strstr(err, "on_write"));
    free(path);
}

/* A write of a key nobody read does not take room in the tier. */
static void test_kv_tier_write_of_an_unread_key_is_not_cached(void **state)
{
    fixture_t *f = *state;
    int64_t ver;
    int hit = -1;
    put(f->db, "cold", "v1", &ver);
    put(f->db, "cold", "v2", &ver);
    assert_int_equal(stats(f->db).cache_entries, 0);
    assert_int_equal(get(f->db, "cold", &hit), ver);
    assert_int_equal(hit, 0);
}

/* The bloom filter is built in the background after open: wait (bounded)
 * until it answers for a never-written key. */
static void wait_bloom(sqlcached_t *db)
{
    for (int i = 0; i < 500; i++) {
        uint64_t before = stats(db).cache_bloom_skips;
        assert_int_equal(get(db, "__probe_never_written__", NULL), 0);
        if (stats(db).cache_bloom_skips > before)
            return;
        usleep(10000);
    }
    fail_msg("the bloom filter was not ready within 5 s");
}

static void test_kv_tier_bloom_skips_never_written_keys(void **state)
{
    fixture_t *f = *state;
    wait_bloom(f->db);
    uint64_t reads = stats(f->db).storage_reads;
    uint64_t skips = stats(f->db).cache_bloom_skips;
    assert_int_equal(get(f->db, "never", NULL), 0);
    assert_int_equal(stats(f->db).cache_bloom_skips, skips + 1);
    assert_int_equal(stats(f->db).storage_reads, reads);
    int64_t ver;
    put(f->db, "never", "now", &ver);
    assert_int_equal(get(f->db, "never", NULL), ver);
}

static void test_kv_tier_negative_entry_invalidated_by_put(void **state)
{
    fixture_t *f = *state;
    int64_t ver;
    wait_bloom(f->db);
    put(f->db, "gone", "x", &ver);
    assert_int_equal(sqlcached_kv_delete(f->db, "gone", 4, NULL), SQLCACHED_OK);
    /* the bloom still says "maybe": the first read goes to SQLite and
     * leaves a negative entry; the second is answered by it */
    assert_int_equal(get(f->db, "gone", NULL), 0);
    uint64_t reads = stats(f->db).storage_reads;
    assert_int_equal(get(f->db, "gone", NULL), 0);
    assert_int_equal(stats(f->db).storage_reads, reads);
    assert_true(stats(f->db).cache_negative_hits >= 1);
    put(f->db, "gone", "back", &ver);
    assert_int_equal(get(f->db, "gone", NULL), ver);
}

static void test_kv_tier_bloom_survives_restart(void **state)
{
    fixture_t *f = *state;
    int64_t ver;
    put(f->db, "persisted", "x", &ver);
    sqlcached_close(f->db);
    f->db = open_with(f, NULL);
    assert_non_null(f->db);
    wait_bloom(f->db);
    assert_int_equal(get(f->db, "persisted", NULL), ver); /* rebuilt from SQLite */
    assert_int_equal(get(f->db, "other", NULL), 0);
}

/* --- single-flight ------------------------------------------------------ */

typedef struct sf_arg {
    sqlcached_t *db;
    pthread_barrier_t *start;
    int64_t got;
} sf_arg_t;

static void *sf_reader(void *p)
{
    sf_arg_t *a = p;
    pthread_barrier_wait(a->start);
    sqlcached_value_t *v = NULL;
    a->got = sqlcached_kv_get(a->db, "hot", 3, &v) == SQLCACHED_OK ? v->version : -1;
    sqlcached_value_release(v);
    return NULL;
}

static void slow_fill(void *arg)
{
    (void)arg;
    usleep(50000); /* keep the leader loading while the others arrive */
}

static void with_slow_fill(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->testing_before_fill = slow_fill;
}

static void test_kv_tier_single_flight_one_sqlite_read(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, with_slow_fill);
    int64_t ver;
    put(f->db, "hot", "value", &ver);
    enum { N = 16 };
    pthread_t th[N];
    sf_arg_t args[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    uint64_t reads = stats(f->db).storage_reads;
    for (int i = 0; i < N; i++) {
        args[i] = (sf_arg_t){f->db, &start, 0};
        assert_int_equal(pthread_create(&th[i], NULL, sf_reader, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].got, ver);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(stats(f->db).storage_reads - reads, 1);
    assert_true(stats(f->db).cache_singleflight_waits >= 1);
}

/* --- the stale-fill race ------------------------------------------------ */

/* Runs inside the reader, after it read the old row and before it fills:
 * a writer commits a new version and invalidates, exactly there. */
static void write_in_the_window(void *arg)
{
    fixture_t *f = arg;
    if (!f->race_armed)
        return;
    f->race_armed = 0;
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "race", 4, "new", 3, NULL, &r), SQLCACHED_OK);
    f->race_version = r.version;
}

static void with_race_hook(sqlcached_options_t *o, fixture_t *f)
{
    o->testing_before_fill = write_in_the_window;
    o->testing_arg = f;
}

static void with_race_hook_no_guard(sqlcached_options_t *o, fixture_t *f)
{
    with_race_hook(o, f);
    o->testing_disable_fill_guard = 1;
}

/* Returns the version a read sees after the race played out. */
static int64_t play_race(fixture_t *f, void (*tweak)(sqlcached_options_t *, fixture_t *))
{
    sqlcached_close(f->db);
    f->db = open_with(f, tweak);
    int64_t old;
    put(f->db, "race", "old", &old);
    f->race_armed = 1;
    assert_int_equal(get(f->db, "race", NULL), old); /* began before the write */
    assert_true(f->race_version > old);
    return get(f->db, "race", NULL);
}

static void test_kv_tier_fill_guard_drops_stale_fill(void **state)
{
    fixture_t *f = *state;
    int64_t seen = play_race(f, with_race_hook);
    assert_int_equal(seen, f->race_version);
    assert_true(stats(f->db).cache_fills_dropped >= 1);
}

static void with_race_hook_invalidate(sqlcached_options_t *o, fixture_t *f)
{
    with_race_hook(o, f);
    o->on_write = SQLCACHED_ON_WRITE_INVALIDATE;
}

static void with_race_hook_invalidate_no_guard(sqlcached_options_t *o, fixture_t *f)
{
    with_race_hook_no_guard(o, f);
    o->on_write = SQLCACHED_ON_WRITE_INVALIDATE;
}

/* The same race in invalidate mode: the write deletes, the guard drops the
 * old fill; without the guard the old value is cached after the delete. */
static void test_kv_tier_invalidate_mode_fill_guard_drops_stale_fill(void **state)
{
    fixture_t *f = *state;
    int64_t seen = play_race(f, with_race_hook_invalidate);
    assert_int_equal(seen, f->race_version);
    assert_true(stats(f->db).cache_fills_dropped >= 1);
    assert_string_equal(stats(f->db).on_write, "invalidate");
}

static void test_kv_tier_invalidate_mode_race_is_real_without_the_guard(void **state)
{
    fixture_t *f = *state;
    int64_t seen = play_race(f, with_race_hook_invalidate_no_guard);
    assert_true(seen < f->race_version);
}

static void test_kv_tier_race_is_real_without_the_guard(void **state)
{
    fixture_t *f = *state;
    int64_t seen = play_race(f, with_race_hook_no_guard);
    /* Without the guard the old value was cached after the write: stale. */
    assert_true(seen < f->race_version);
}

/* --- concurrent stress: no read older than the last acknowledged write --- */

enum { KEYS = 4, WRITERS = 2, READERS = 4, ROUNDS = 1500 };

/* Writes per writer: ROUNDS, a fifth of it under valgrind
 * ($SQLCACHED_WRAPPER, set by scripts/check-valgrind), which runs one
 * thread at a time: there the test looks for memory errors on every path,
 * which 300 rounds reach as well; the race itself is hunted by the native
 * run (on PostgreSQL each write is a round trip, and the full count took
 * minutes under valgrind). */
static int rounds(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w ? ROUNDS / 5 : ROUNDS;
}

typedef struct stress {
    sqlcached_t *db;
    atomic_llong acked[KEYS]; /* newest acknowledged version per key */
    atomic_int violations;
    atomic_int stop;
} stress_t;

static void *stress_writer(void *p)
{
    stress_t *s = p;
    char k[8];
    int n = rounds();
    for (int i = 0; i < n; i++) {
        int key = i % KEYS;
        snprintf(k, sizeof k, "s%d", key);
        sqlcached_write_result_t r;
        if (sqlcached_kv_put(s->db, k, strlen(k), "v", 1, NULL, &r) != SQLCACHED_OK)
            continue;
        long long cur = atomic_load(&s->acked[key]);
        while (cur < r.version && !atomic_compare_exchange_weak(&s->acked[key], &cur, r.version))
            ;
    }
    return NULL;
}

static void *stress_reader(void *p)
{
    stress_t *s = p;
    char k[8];
    for (int i = 0; !atomic_load(&s->stop); i++) {
        int key = i % KEYS;
        snprintf(k, sizeof k, "s%d", key);
        long long floor = atomic_load(&s->acked[key]); /* acked before this read began */
        sqlcached_value_t *v = NULL;
        if (sqlcached_kv_get(s->db, k, strlen(k), &v) == SQLCACHED_OK) {
            if (v->version < floor)
                atomic_fetch_add(&s->violations, 1);
            sqlcached_value_release(v);
        } else if (floor > 0) {
            atomic_fetch_add(&s->violations, 1);
        }
    }
    return NULL;
}

static void run_stress(fixture_t *f)
{
    static stress_t s;
    memset(&s, 0, sizeof s);
    s.db = f->db;
    pthread_t w[WRITERS], r[READERS];
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&r[i], NULL, stress_reader, &s), 0);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, stress_writer, &s), 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&s.stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i], NULL);
    assert_int_equal(atomic_load(&s.violations), 0);
    assert_true(stats(f->db).cache_hits > 0);
}

static void test_kv_tier_no_stale_read_under_concurrency(void **state)
{
    run_stress(*state);
}

static void test_kv_tier_invalidate_mode_no_stale_read_under_concurrency(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, with_invalidate);
    assert_non_null(f->db);
    run_stress(f);
    assert_int_equal(stats(f->db).cache_write_replaced, 0);
}

/* --- hit and miss counters (Redis keyspace_hits / keyspace_misses) -------- */

/* Every GET not answered with a value from the tier is a miss, however it
 * was answered: the bloom filter, a negative entry, the store. */
static void test_kv_tier_absent_key_reads_are_misses(void **state)
{
    fixture_t *f = *state;
    wait_bloom(f->db);
    sqlcached_stats_t s0 = stats(f->db);
    assert_int_equal(get(f->db, "never-written", NULL), 0); /* bloom filter */
    sqlcached_stats_t s1 = stats(f->db);
    assert_int_equal(s1.cache_bloom_skips, s0.cache_bloom_skips + 1);
    assert_int_equal(s1.cache_misses, s0.cache_misses + 1);
    assert_int_equal(s1.cache_hits, s0.cache_hits);
    int64_t ver;
    put(f->db, "gone", "v", &ver);
    assert_int_equal(sqlcached_kv_delete(f->db, "gone", 4, NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "gone", NULL), 0); /* the store */
    assert_int_equal(get(f->db, "gone", NULL), 0); /* the negative entry */
    sqlcached_stats_t s2 = stats(f->db);
    assert_int_equal(s2.cache_negative_hits, s1.cache_negative_hits + 1);
    assert_int_equal(s2.cache_misses, s1.cache_misses + 2);
    assert_int_equal(s2.cache_hits, s1.cache_hits);
    /* a value: one miss (read from the store), then one hit */
    put(f->db, "here", "v", &ver);
    assert_int_equal(get(f->db, "here", NULL), ver);
    assert_int_equal(get(f->db, "here", NULL), ver);
    sqlcached_stats_t s3 = stats(f->db);
    assert_int_equal(s3.cache_misses, s2.cache_misses + 1);
    assert_int_equal(s3.cache_hits, s2.cache_hits + 1);
}

static void without_tier(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->cache_memory = 0;
}

/* Without a memory tier every GET is a miss (the same branch serves a
 * cluster node that does not trust its tier: engine_tier_usable). */
static void test_kv_tier_reads_past_no_tier_are_misses(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, without_tier);
    assert_non_null(f->db);
    int64_t ver;
    put(f->db, "k", "v", &ver);
    sqlcached_stats_t s0 = stats(f->db);
    int hit = -1;
    assert_int_equal(get(f->db, "k", &hit), ver);
    assert_int_equal(hit, 0);
    assert_int_equal(get(f->db, "k", &hit), ver);
    assert_int_equal(get(f->db, "absent", NULL), 0);
    sqlcached_stats_t s1 = stats(f->db);
    assert_int_equal(s1.cache_misses, s0.cache_misses + 3);
    assert_int_equal(s1.cache_hits, 0);
}

static void without_hotkeys(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->hotkeys = 0;
}

/* Hot-key tracking off: the list says so and is empty; reads still work. */
static void test_kv_tier_hotkeys_off(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, without_hotkeys);
    assert_non_null(f->db);
    int64_t ver;
    put(f->db, "k", "v", &ver);
    assert_int_equal(get(f->db, "k", NULL), ver);
    sqlcached_hotkeys_t *list = NULL;
    assert_int_equal(sqlcached_hotkeys(f->db, 10, &list), SQLCACHED_OK);
    assert_int_equal(list->enabled, 0);
    assert_int_equal(list->n, 0);
    sqlcached_hotkeys_free(list);
}

/* --- memory limit --------------------------------------------------------- */

static void with_small_tier(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->cache_memory = 256 * 1024;
    o->cache_policy = "allkeys-lru";
}

static void test_kv_tier_memory_stays_under_the_limit(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    f->db = open_with(f, with_small_tier);
    char k[32], v[1000];
    memset(v, 'x', sizeof v);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "big%d", i);
        assert_int_equal(sqlcached_kv_put(f->db, k, strlen(k), v, sizeof v, NULL, NULL),
                         SQLCACHED_OK);
        sqlcached_value_t *got = NULL;
        assert_int_equal(sqlcached_kv_get(f->db, k, strlen(k), &got), SQLCACHED_OK);
        sqlcached_value_release(got);
        sqlcached_stats_t st = stats(f->db);
        assert_true(st.cache_memory_bytes <= st.cache_memory_limit);
    }
    sqlcached_stats_t st = stats(f->db);
    assert_true(st.cache_evictions > 0);
    assert_string_equal(st.cache_policy, "allkeys-lru");
    /* evicted from memory, never lost: every key is still readable */
    snprintf(k, sizeof k, "big%d", 0);
    assert_true(get(f->db, k, NULL) > 0);
}

static void with_bad_policy(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->cache_policy = "mostly-lucky";
}

static void test_kv_tier_rejects_unknown_policy(void **state)
{
    fixture_t *f = *state;
    assert_null(open_with(f, with_bad_policy));
}

/* --- sliding expiry: the tier entry's expiry follows the row's ---------- */

static testutil_clock_t slide_clock;

static void with_fake_clock(sqlcached_options_t *o, fixture_t *f)
{
    (void)f;
    o->clock_ms = testutil_clock_read;
    o->clock_arg = &slide_clock;
}

static void test_kv_tier_sliding_entry_follows_the_row(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    int64_t t0 = 1700000000000LL;
    slide_clock.now = t0;
    f->db = open_with(f, with_fake_clock);
    assert_non_null(f->db);
    sqlcached_put_options_t o = {.ttl_ms = 10000, .sliding = 1};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "v", 1, &o, NULL), SQLCACHED_OK);
    int hit = 0;
    assert_true(get(f->db, "s", &hit) > 0);
    assert_false(hit); /* loaded */
    slide_clock.now = t0 + 8000;
    assert_true(get(f->db, "s", &hit) > 0);
    assert_true(hit);               /* and the extension (to t0 + 18.5 s) is queued */
    put(f->db, "flush", "x", NULL); /* behind it in the writer's queue */
    uint64_t reads = stats(f->db).storage_reads;
    slide_clock.now = t0 + 10500; /* past the expiry the entry was loaded with */
    assert_true(get(f->db, "s", &hit) > 0);
    assert_true(hit); /* the tier took the extended expiry */
    put(f->db, "flush", "y", NULL);
    assert_int_equal(stats(f->db).storage_reads, reads);
    /* the read at 10.5 s extended to 22 s: gone from the tier with the row */
    slide_clock.now = t0 + 22000;
    assert_int_equal(get(f->db, "s", &hit), 0);
    assert_int_equal(stats(f->db).storage_reads, reads + 1);
    sqlcached_keys_t *page = NULL;
    assert_int_equal(sqlcached_kv_list(f->db, "s", 1, NULL, 0, 10, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 0);
    sqlcached_keys_free(page);
}

/* A plain PUT over a cached sliding key: the tier entry stops sliding. */
static void test_kv_tier_plain_put_stops_sliding(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    int64_t t0 = 1700000000000LL;
    slide_clock.now = t0;
    f->db = open_with(f, with_fake_clock);
    assert_non_null(f->db);
    sqlcached_put_options_t o = {.ttl_ms = 10000, .sliding = 1};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "v", 1, &o, NULL), SQLCACHED_OK);
    int hit = 0;
    get(f->db, "s", &hit);
    get(f->db, "s", &hit);
    assert_true(hit);
    o.sliding = 0;
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "w", 1, &o, NULL), SQLCACHED_OK);
    slide_clock.now = t0 + 9000;
    assert_true(get(f->db, "s", &hit) > 0);
    assert_true(hit); /* replaced in place, not sliding */
    put(f->db, "flush", "x", NULL);
    slide_clock.now = t0 + 10000;
    assert_int_equal(get(f->db, "s", &hit), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_kv_tier_sliding_entry_follows_the_row),
        T(test_kv_tier_plain_put_stops_sliding),
        T(test_kv_tier_second_read_is_a_hit),
        T(test_kv_tier_write_of_a_cached_key_replaces_it),
        T(test_kv_tier_invalidate_mode_write_deletes_the_cached_copy),
        T(test_kv_tier_replace_mode_counts_replacements),
        T(test_kv_tier_rejects_unknown_on_write),
        T(test_kv_tier_write_of_an_unread_key_is_not_cached),
        T(test_kv_tier_bloom_skips_never_written_keys),
        T(test_kv_tier_negative_entry_invalidated_by_put),
        T(test_kv_tier_bloom_survives_restart),
        T(test_kv_tier_single_flight_one_sqlite_read),
        T(test_kv_tier_fill_guard_drops_stale_fill),
        T(test_kv_tier_race_is_real_without_the_guard),
        T(test_kv_tier_invalidate_mode_fill_guard_drops_stale_fill),
        T(test_kv_tier_invalidate_mode_race_is_real_without_the_guard),
        T(test_kv_tier_no_stale_read_under_concurrency),
        T(test_kv_tier_invalidate_mode_no_stale_read_under_concurrency),
        T(test_kv_tier_memory_stays_under_the_limit),
        T(test_kv_tier_absent_key_reads_are_misses),
        T(test_kv_tier_reads_past_no_tier_are_misses),
        T(test_kv_tier_hotkeys_off),
        T(test_kv_tier_rejects_unknown_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
