/*
 * log.h - one line per event on stderr, filtered by level.
 *
 * Lines look like "2026-11-22T03:57:18.123Z warn store: message". The level
 * is process-wide and set once at start-up (log_set_level); logging is
 * thread-safe (one fprintf per line). Never log secrets or request bodies.
 */
#ifndef SQLCACHED_LOG_H
#define SQLCACHED_LOG_H

typedef enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/* Parse "error", "warn", "info" or "debug"; -1 if unknown. */
int log_level_from_name(const char *name);

void log_msg(log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
