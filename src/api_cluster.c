/*
 * api_cluster.c - GET /v1/cluster: this node and every member of its
 * cluster (CONTRACT.md, "PostgreSQL and clusters"), as the shared database
 * has them. On SQLite the cluster is this one node.
 */
#include "api.h"

typedef struct members_out {
    json_t *list;
    bool failed; /* out of memory on the way */
} members_out_t;

static void add_member(void *cls, const sqlcached_member_t *m)
{
    members_out_t *out = cls;
    json_t *o = json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)m->id, "address", m->address,
                          "state", m->up ? "up" : "down", "heartbeat_at",
                          (json_int_t)m->heartbeat_at);
    if (!o || json_array_append_new(out->list, o) != 0)
        out->failed = true;
}

enum MHD_Result api_cluster(http_request_t *req)
{
    members_out_t out = {.list = json_array()};
    if (!out.list)
        return http_reply_problem(req, "unavailable", "out of memory");
    int64_t self = 0;
    sqlcached_status_t st = sqlcached_cluster_members(req->db, &self, add_member, &out);
    if (st != SQLCACHED_OK) {
        json_decref(out.list);
        return http_reply_status(req, st, "cannot read the cluster's members");
    }
    json_t *doc =
        out.failed ? NULL : json_pack("{s:I, s:o}", "node", (json_int_t)self, "members", out.list);
    if (!doc) {
        if (out.failed)
            json_decref(out.list);
        return http_reply_problem(req, "unavailable", "out of memory");
    }
    return http_reply_json(req, MHD_HTTP_OK, doc);
}
