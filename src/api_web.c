/*
 * api_web.c - the dashboard: GET / (HTML), /dashboard.css, /dashboard.js.
 *
 * The files come from web/ and are compiled in (src/web.h); nothing is read
 * from disk and nothing is loaded from elsewhere. Like /healthz these paths
 * need no token: the page holds no data, and the script asks the user for
 * the token (kept in the tab's sessionStorage) when /v1/stats answers 401.
 *
 * The page runs only the script and style served here: the
 * Content-Security-Policy allows nothing inline and nothing from another
 * origin, and the script talks only to this origin (connect-src 'self').
 */
#include "api.h"
#include "web.h"

static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

enum MHD_Result api_web_dashboard(http_request_t *req)
{
    return http_reply_static(req, web_dashboard_html, web_dashboard_html_len,
                             "text/html; charset=utf-8", CSP);
}

enum MHD_Result api_web_css(http_request_t *req)
{
    return http_reply_static(req, web_dashboard_css, web_dashboard_css_len,
                             "text/css; charset=utf-8", NULL);
}

enum MHD_Result api_web_js(http_request_t *req)
{
    return http_reply_static(req, web_dashboard_js, web_dashboard_js_len,
                             "text/javascript; charset=utf-8", NULL);
}
