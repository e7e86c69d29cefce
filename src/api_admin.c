/*
 * api_admin.c - administration: effective configuration and online backup.
 *
 * Both live under /v1/admin/, which takes --admin-token when one is set
 * (http.c). A backup goes to a plain file name inside --backup-dir: no
 * directory part, no leading dot, so no request can write outside it (nor
 * onto a backup's temporary file, ".sqlcached-tmp-*"). A name that is a
 * directory there is 409; one the file system cannot hold, 400.
 */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api.h"

enum MHD_Result api_admin_config(http_request_t *req)
{
    json_t *doc = req->cfg->settings ? json_deep_copy(req->cfg->settings) : json_object();
    return http_reply_json(req, MHD_HTTP_OK, doc);
}

/* A file name of 1..255 characters [A-Za-z0-9._-], not starting with '.'. */
static bool backup_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > 255 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum MHD_Result api_admin_backup(http_request_t *req)
{
    static const char *const members[] = {"path", NULL};
    const char *name;
    size_t n;
    json_t *body = http_body_object(req, false, members);
    if (!body)
        return MHD_YES;
    if (!http_json_string(req, body, "path", 255, &name, &n)) {
        json_decref(body);
        return MHD_YES;
    }
    char path[4096];
    bool ok = backup_name_ok(name, n);
    bool fits = ok &&
                snprintf(path, sizeof path, "%s/%s",
                         req->cfg->backup_dir ? req->cfg->backup_dir : "", name) < (int)sizeof path;
    json_decref(body);
    if (!ok)
        return http_reply_problem(req, "invalid_argument",
                                  "path must be a file name inside the backup directory "
                                  "([A-Za-z0-9._-], not starting with '.')");
    if (strcmp(sqlcached_storage_backend(req->db), "sqlite") != 0)
        return http_reply_problem(req, "conflict",
                                  "the data is in PostgreSQL: back it up with pg_dump or "
                                  "PostgreSQL's own backups (pg_basebackup, WAL archiving)");
    if (!req->cfg->backup_dir)
        return http_reply_problem(req, "conflict", "backups are disabled: start with --backup-dir");
    if (!fits)
        return http_reply_problem(req, "invalid_argument",
                                  "path too long for the backup directory");
    int64_t t0 = now_ms();
    char err[512] = "";
    sqlcached_status_t st = sqlcached_backup(req->db, path, err, sizeof err);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, err);
    struct stat sb;
    json_int_t bytes = stat(path, &sb) == 0 ? (json_int_t)sb.st_size : 0;
    return http_reply_json(req, MHD_HTTP_OK,
                           json_pack("{s:s, s:I, s:I}", "path", path, "bytes", bytes, "duration_ms",
                                     (json_int_t)(now_ms() - t0)));
}
