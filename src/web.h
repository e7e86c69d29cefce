/*
 * web.h - the dashboard's files, embedded at build time.
 *
 * scripts/embed-web.sh turns web/dashboard.html, web/dashboard.css and
 * web/dashboard.js into src/web_assets.c (a generated file): each is a
 * static, NUL-terminated string and its length in bytes. api_web.c serves
 * them; they are never freed and never change while the daemon runs.
 */
#ifndef SQLCACHED_WEB_H
#define SQLCACHED_WEB_H

#include <stddef.h>

extern const char web_dashboard_html[];
extern const size_t web_dashboard_html_len;
extern const char web_dashboard_css[];
extern const size_t web_dashboard_css_len;
extern const char web_dashboard_js[];
extern const size_t web_dashboard_js_len;

#endif
