/*
 * sim.c - sqlcached-sim: replays a cache trace (one integer key per line,
 * gzip or plain, a path or "-" for stdin) or a generated Zipf workload
 * through the memory tier and prints the hit ratio of each policy next to
 * Belady's optimal (OPT) for the same capacity.
 *
 * Capacity:
 *   --entries N    the cache's max_entries limit: every entry weighs one,
 *                  so the cache holds exactly N entries whatever their
 *                  size (this is how an "entries" capacity maps onto the
 *                  byte-limited cache: a count limit beside the byte one).
 *   --memory SIZE  the cache's memory_limit in bytes (64MB, 1GB, ...);
 *                  every entry stores --value-size bytes (default 100)
 *                  under an 8-byte key. OPT then gets the number of
 *                  entries allkeys-lru held at the end (the same bytes).
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct args {
    const char *trace;
    const char *policy;
    sim_options_t opt;
    int json;
    double zipf;
    size_t keys, requests, scan_len, scan_every;
    int use_zipf;
};

static void usage(FILE *f)
{
    fputs("usage: sqlcached-sim (--entries N | --memory SIZE) [options] "
          "(TRACE | - | --zipf S --keys N --requests M)\n"
          "  --policy NAME|all   eviction policy (default all)\n"
          "  --shards N          cache shards (default 1)\n"
          "  --value-size B      bytes per entry (default 100)\n"
          "  --ttl MS            give every entry a TTL (1 request = 1 ms);\n"
          "                      without it volatile-* admit nothing when full\n"
          "  --scan LEN --scan-every K   add LEN fresh keys after every K\n"
          "  --seed N            workload and cache seed\n"
          "  --json              rows as a JSON array\n",
          f);
}

static int need_value(int i, int argc, char **argv)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "sqlcached-sim: %s needs a value\n", argv[i]);
        return -1;
    }
    return 0;
}

static int parse_number(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (end == s || *end != '\0')
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Parses one option at argv[*i]. Returns 0, or -1 on error. */
static int parse_option(struct args *a, int *i, int argc, char **argv)
{
    const char *o = argv[*i];
    size_t n;

    if (strcmp(o, "--json") == 0) {
        a->json = 1;
        return 0;
    }
    if (need_value(*i, argc, argv) != 0)
        return -1;
    const char *v = argv[++*i];
    if (strcmp(o, "--entries") == 0)
        return parse_number(v, &a->opt.entries);
    if (strcmp(o, "--memory") == 0)
        return sim_parse_size(v, &a->opt.memory);
    if (strcmp(o, "--policy") == 0)
        return a->policy = v, 0;
    if (strcmp(o, "--value-size") == 0)
        return sim_parse_size(v, &a->opt.value_size);
    if (strcmp(o, "--shards") == 0) {
        if (parse_number(v, &n) != 0)
            return -1;
        a->opt.shards = (unsigned)n;
        return 0;
    }
    if (strcmp(o, "--ttl") == 0) {
        if (parse_number(v, &n) != 0)
            return -1;
        a->opt.ttl_ms = (int64_t)n;
        return 0;
    }
    if (strcmp(o, "--seed") == 0) {
        if (parse_number(v, &n) != 0)
            return -1;
        a->opt.seed = n;
        return 0;
    }
    if (strcmp(o, "--zipf") == 0) {
        a->use_zipf = 1;
        a->zipf = strtod(v, NULL);
        return 0;
    }
    if (strcmp(o, "--keys") == 0)
        return parse_number(v, &a->keys);
    if (strcmp(o, "--requests") == 0)
        return parse_number(v, &a->requests);
    if (strcmp(o, "--scan") == 0)
        return parse_number(v, &a->scan_len);
    if (strcmp(o, "--scan-every") == 0)
        return parse_number(v, &a->scan_every);
    fprintf(stderr, "sqlcached-sim: unknown option %s\n", o);
    return -1;
}

static int parse_args(struct args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->policy = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            if (parse_option(a, &i, argc, argv) != 0)
                return -1;
        } else if (a->trace == NULL) {
            a->trace = argv[i];
        } else {
            return -1;
        }
    }
    if ((a->opt.entries == 0) == (a->opt.memory == 0))
        return -1;
    if (a->use_zipf ? (a->trace || !a->keys || !a->requests) : !a->trace)
        return -1;
    if (a->scan_len && !a->scan_every)
        return -1;
    return 0;
}

static void print_row(const sim_result_t *r, int json, int first)
{
    double ratio = r->requests ? (double)r->hits / (double)r->requests : 0;

    if (json)
        printf("%s\n  {\"policy\": \"%s\", \"requests\": %llu, \"hits\": %llu, "
               "\"hit_ratio\": %.6f, \"evictions\": %llu}",
               first ? "[" : ",", r->policy, (unsigned long long)r->requests,
               (unsigned long long)r->hits, ratio, (unsigned long long)r->evictions);
    else
        printf("%-16s %10llu %10llu %8.2f%% %10llu\n", r->policy, (unsigned long long)r->requests,
               (unsigned long long)r->hits, 100 * ratio, (unsigned long long)r->evictions);
}

static int load_trace(const struct args *a, sim_trace_t *t)
{
    if (a->use_zipf)
        return sim_trace_zipf(t, a->zipf, a->keys, a->requests, a->scan_len, a->scan_every,
                              a->opt.seed ? a->opt.seed : 1);
    return sim_trace_read(a->trace, t);
}

int main(int argc, char **argv)
{
    struct args a;
    sim_trace_t t;
    sim_result_t r;
    size_t opt_cap = 0;
    int first = 1, all;

    if (parse_args(&a, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    all = strcmp(a.policy, "all") == 0;
    if (!all && cache_policy_from_name(a.policy) == CACHE_POLICY_INVALID) {
        fprintf(stderr, "sqlcached-sim: unknown policy %s\n", a.policy);
        return 2;
    }
    if (load_trace(&a, &t) != 0) {
        fprintf(stderr, "sqlcached-sim: cannot read the trace\n");
        return 1;
    }
    if (!a.json)
        printf("%-16s %10s %10s %9s %10s\n", "policy", "requests", "hits", "hit_ratio",
               "evictions");
    for (int p = 0; p < CACHE_POLICY_COUNT; p++) {
        if (!all && p != cache_policy_from_name(a.policy))
            continue;
        if (sim_run(&t, (cache_policy_t)p, &a.opt, &r) != 0) {
            fprintf(stderr, "sqlcached-sim: cannot create the cache\n");
            return 1;
        }
        print_row(&r, a.json, first);
        first = 0;
        if (p == CACHE_POLICY_ALLKEYS_LRU || opt_cap == 0)
            opt_cap = r.resident;
    }
    if (a.opt.entries)
        opt_cap = a.opt.entries;
    if (sim_opt(&t, opt_cap, &r) != 0) {
        fprintf(stderr, "sqlcached-sim: out of memory\n");
        return 1;
    }
    print_row(&r, a.json, first);
    if (a.json)
        printf("\n]\n");
    sim_trace_free(&t);
    return 0;
}
