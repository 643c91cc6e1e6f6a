/* Broadcasts through a server's REST API (--rest-key): each message is one
 * `POST /v1/emit` with `Authorization: Bearer <key>`, on a pool of keep-alive
 * HTTP/1.1 connections (--rest-conns) to the --url host, round robin; libevent
 * queues the requests of one connection, so a slow answer delays only its own
 * connection's queue. Counts requests, 2xx answers and failures, and times
 * each request (send -> answer). Switchboard answers 202; the Node reference
 * server (reference/server.mjs) has the same endpoint. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "lg.h"

#define MAX_CONNS 256

static struct evhttp_connection *conns[MAX_CONNS];
static int nconns, next_conn;
static char auth_header[600];

int lg_rest_open(void)
{
    nconns = R.cfg.rest_conns;
    if (nconns < 1 || nconns > MAX_CONNS || strlen(R.cfg.rest_key) > sizeof(auth_header) - 16)
        return -1;
    snprintf(auth_header, sizeof(auth_header), "Bearer %s", R.cfg.rest_key);
    for (int i = 0; i < nconns; i++) {
        conns[i] = evhttp_connection_base_new(R.base, NULL, R.cfg.host, (unsigned short)R.cfg.port);
        if (conns[i] == NULL)
            return -1;
        evhttp_connection_set_timeout(conns[i], 30);
    }
    return 0;
}

void lg_rest_close(void)
{
    for (int i = 0; i < nconns; i++)
        if (conns[i] != NULL)
            evhttp_connection_free(conns[i]);
    nconns = 0;
}

typedef struct pending {
    double t;     /* sent */
    int measured; /* a message of the measured phase (not a barrier) */
} pending;

static void on_answer(struct evhttp_request *req, void *arg)
{
    pending *p = arg;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    if (code < 200 || code >= 300)
        lg_note_error("POST /v1/emit: %s %d", req != NULL ? "status" : "no answer", code);
    if (p->measured) {
        if (code >= 200 && code < 300) {
            R.rest_ok++;
            lg_hist_add(&R.rest_lat, (uint64_t)((lg_now() - p->t) * 1e6));
        } else {
            R.rest_err++;
        }
    }
    free(p);
}

int lg_rest_publish(const char *msg_json, size_t n, int measured)
{
    if (nconns == 0)
        return -1;
    pending *t = malloc(sizeof(*t));
    if (t == NULL)
        return -1;
    t->t = lg_now();
    t->measured = measured;
    struct evhttp_request *req = evhttp_request_new(on_answer, t);
    if (req == NULL) {
        free(t);
        return -1;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", R.cfg.host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Authorization", auth_header);
    evbuffer_add(evhttp_request_get_output_buffer(req), msg_json, n);
    struct evhttp_connection *c = conns[next_conn];
    next_conn = (next_conn + 1) % nconns;
    /* On failure libevent frees the request without calling back. */
    if (evhttp_make_request(c, req, EVHTTP_REQ_POST, "/v1/emit") != 0) {
        free(t);
        return -1;
    }
    R.rest_sent += measured != 0;
    return 0;
}
