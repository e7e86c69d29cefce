/*
 * http_stream.c - streamed replies (http_reply_stream), the form of the
 * Server-Sent Events of watches: a reply whose body a callback produces
 * for as long as the client stays, parking the connection from MHD's
 * content reader when there is nothing to send. Apart from http.c because
 * this parking is its own (the reader suspends the connection itself; the
 * handlers' parking is http.c's) and only the streams use it. The server's
 * state and the stream type are shared through http_int.h; http.c's
 * resume_all wakes the suspended streams when the server stops.
 */
#include "http_int.h"

#include <pthread.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------
 * Streams (http_reply_stream): the reader parks the connection itself,
 * from MHD's content reader callback (where libmicrohttpd allows
 * MHD_suspend_connection), when fn has nothing; http_stream_wake resumes
 * it. suspended and pending are under the server's park_lock, as the
 * streams list (resume_all ends them when the server stops).
 * ------------------------------------------------------------------------ */

#define STREAM_BLOCK 4096

http_stream_t *http_stream_new(http_request_t *req)
{
    http_stream_t *s = calloc(1, sizeof *s);
    if (s) {
        s->srv = req->srv;
        s->conn = req->conn;
    }
    return s;
}

void http_stream_free(http_stream_t *s)
{
    free(s);
}

void http_stream_wake(http_stream_t *s)
{
    pthread_mutex_lock(&s->srv->park_lock);
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    } else {
        s->pending = true;
    }
    pthread_mutex_unlock(&s->srv->park_lock);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    http_stream_t *s = cls;
    http_server_t *srv = s->srv;
    for (int tries = 0; tries < 4; tries++) {
        pthread_mutex_lock(&srv->park_lock);
        bool stopping = srv->stopping;
        s->pending = false;
        pthread_mutex_unlock(&srv->park_lock);
        ssize_t n = s->fn(s->cls, buf, max, stopping);
        if (n > 0)
            return n;
        if (n < 0 || stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&srv->park_lock);
        bool again = s->pending || srv->stopping;
        if (!again) {
            s->suspended = true;
            MHD_suspend_connection(s->conn); /* MHD calls again once resumed */
        }
        pthread_mutex_unlock(&srv->park_lock);
        if (!again)
            return 0;
    }
    return 0; /* woken on every try: MHD calls again at once */
}

static void stream_end(void *cls)
{
    http_stream_t *s = cls;
    s->free_cls(s->cls); /* no wake comes after it */
    pthread_mutex_lock(&s->srv->park_lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (s->replying)
        s->srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&s->srv->park_lock);
    free(s);
}

enum MHD_Result http_reply_stream(http_request_t *req, http_stream_t *s, const char *content_type,
                                  http_stream_fn fn, void *cls, void (*free_cls)(void *cls))
{
    s->fn = fn;
    s->cls = cls;
    s->free_cls = free_cls;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                  stream_read, s, stream_end);
    if (!resp) {
        stream_end(s);
        return http_reply_problem(req, "unavailable", "out of memory");
    }
    pthread_mutex_lock(&req->srv->park_lock);
    s->replying = true;
    s->next = req->srv->streams;
    if (s->next)
        s->next->prev = s;
    req->srv->streams = s;
    pthread_mutex_unlock(&req->srv->park_lock);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return hi_queue(req, MHD_HTTP_OK, resp, 0);
}
