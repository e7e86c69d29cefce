/*
 * api_ops.c - operational endpoints: health.
 */
#include "api.h"

enum MHD_Result api_health(http_request_t *req)
{
    return http_reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}
