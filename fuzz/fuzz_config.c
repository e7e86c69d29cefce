/*
 * fuzz_config.c - the config file parser (src/config.c config_parse_text,
 * every setting's value parser behind it) and the effective-configuration
 * document built from the result (config_json, served on /v1/admin/config).
 *
 * Input: the text of a config file (any bytes).
 */
#include <jansson.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t cfg;
    char err[512] = "";
    config_defaults(&cfg);
    int rc = config_parse_text(&cfg, (const char *)data, size, "fuzz.conf", err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (rc != 0)
        FUZZ_CHECK(strncmp(err, "fuzz.conf:", 10) == 0);
    FUZZ_CHECK(cfg.nowned >= 0 && cfg.nowned <= (int)(sizeof cfg.owned / sizeof cfg.owned[0]));
    FUZZ_CHECK(cfg.threads >= 1 && cfg.max_body >= 1 && cfg.connection_timeout_s >= 1);
    FUZZ_CHECK(memchr(cfg.listen_host, '\0', sizeof cfg.listen_host) != NULL);
    json_t *doc = config_json(&cfg);
    if (doc) {
        /* secrets are masked in the document */
        json_t *t = json_object_get(doc, "auth_token");
        FUZZ_CHECK(!cfg.auth_token ? json_is_null(t) : strcmp(json_string_value(t), "***") == 0);
        t = json_object_get(doc, "admin_token");
        FUZZ_CHECK(!cfg.admin_token ? json_is_null(t) : strcmp(json_string_value(t), "***") == 0);
        json_decref(doc);
    }
    config_free(&cfg);
    return 0;
}
