/*
 * test_webhook.c — the webhook client: glob matching, backoff, the breaker
 * state machine and URL parsing as pure functions, then real calls on an h2o
 * loop against a small scripted HTTP/1.1 server running in threads of this
 * process (retries, Idempotency-Key, 4xx, timeouts, keep-alive, the circuit).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "switchboard/common.h"
#include "switchboard/config.h"
#include "switchboard/webhook.h"
#include "webhook_private.h"

/* ------------------------------------------------------------ pure functions */

static void test_glob(void **state)
{
    (void)state;
    static const struct {
        const char *pat, *s;
        int want;
    } v[] = {
        {"*", "", 1},
        {"*", "anything", 1},
        {"ev*", "ev", 1},
        {"ev*", "event", 1},
        {"ev*", "xev", 0},
        {"ev?", "ev", 0},
        {"ev?", "ev1", 1},
        {"ev?", "ev12", 0},
        {"chat:*", "chat:", 1},
        {"chat:*", "chat", 0},
        {"*:msg", "a:b:msg", 1},
        {"*:msg", "a:b:msgs", 0},
        {"a*b*c", "abc", 1},
        {"a*b*c", "axxbyyc", 1},
        {"a*b*c", "axxbyy", 0},
        {"a*b*c", "acb", 0},
        {"?", "", 0},
        {"", "", 1},
        {"", "a", 0},
        {"**", "x", 1},
        {"a*", "A", 0},
        {"*a*a*a", "aaaaaaa", 1},
        {"*a*a*b", "aaaaaaa", 0},
        {"x?z", "x?z", 1},
        {"connect", "connect", 1},
        {"connect", "disconnect", 0},
        {"*connect", "disconnect", 1},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(v); i++) {
        if (sb_webhooks_glob(v[i].pat, v[i].s) != v[i].want)
            fail_msg("glob %s vs %s: want %d", v[i].pat, v[i].s, v[i].want);
    }
}

static void test_backoff(void **state)
{
    (void)state;
    /* rnd 0: no jitter */
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 1, 0), 100);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 2, 0), 200);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 3, 0), 400);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 6, 0), 3200);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 7, 0), 5000);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 20, 0), 5000);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 200, 0), 5000); /* no shift overflow */
    /* jitter takes off at most a quarter: rnd % 26 */
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 1, 25), 75);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 1, 26), 100);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 1, 27), 99);
    assert_int_equal(sb_webhooks_backoff_ms(100, 5000, 2, 50), 150);
    /* whatever the jitter, retry n+1 waits at least as long as retry n (below the cap) */
    for (uint64_t r = 0; r < 1000; r++) {
        uint64_t a = sb_webhooks_backoff_ms(50, 100000, 1, r * 7919);
        uint64_t b = sb_webhooks_backoff_ms(50, 100000, 2, r * 104729);
        uint64_t c = sb_webhooks_backoff_ms(50, 100000, 3, r * 1299709);
        assert_true(a >= 37 && a <= 50);
        assert_true(b >= 75 && b <= 100);
        assert_true(c >= 150 && c <= 200);
        assert_true(a <= b && b < c);
    }
    /* max below base: the cap wins, never 0 */
    assert_int_equal(sb_webhooks_backoff_ms(100, 10, 1, 0), 100);
    assert_int_equal(sb_webhooks_backoff_ms(1, 1, 1, 12345), 1);
    assert_int_equal(sb_webhooks_backoff_ms(0, 0, 1, 0), 1);
}

static void test_breaker(void **state)
{
    (void)state;
    sb_breaker_t b;
    assert_int_equal(sb_webhooks_breaker_init(&b, 3, 1000, 500), 0);
    assert_int_equal(b.state, SB_BREAKER_CLOSED);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 0), 1);

    /* two failures, successes in between do not reset them */
    sb_webhooks_breaker_record(&b, 0, 0, 100);
    sb_webhooks_breaker_record(&b, 1, 0, 150);
    sb_webhooks_breaker_record(&b, 0, 0, 200);
    assert_int_equal(b.state, SB_BREAKER_CLOSED);
    /* the third failure, 1000 ms after the first: outside the window */
    sb_webhooks_breaker_record(&b, 0, 0, 1100);
    assert_int_equal(b.state, SB_BREAKER_CLOSED);
    /* the fourth: failures at 200, 1100, 1150 are within 1000 ms */
    sb_webhooks_breaker_record(&b, 0, 0, 1150);
    assert_int_equal(b.state, SB_BREAKER_OPEN);
    assert_int_equal(b.opened_at, 1150);

    /* open: refused until the cooldown is over */
    assert_int_equal(sb_webhooks_breaker_would_allow(&b, 1600), 0);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 1649), 0);
    /* a late non-probe result changes nothing */
    sb_webhooks_breaker_record(&b, 1, 0, 1600);
    assert_int_equal(b.state, SB_BREAKER_OPEN);
    assert_int_equal(sb_webhooks_breaker_would_allow(&b, 1650), 1);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 1650), 2);
    assert_int_equal(b.state, SB_BREAKER_HALF_OPEN);
    /* half-open: one probe only */
    assert_int_equal(sb_webhooks_breaker_would_allow(&b, 1700), 0);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 1700), 0);
    sb_webhooks_breaker_record(&b, 1, 0, 1700); /* not the probe: ignored */
    assert_int_equal(b.state, SB_BREAKER_HALF_OPEN);
    /* probe fails: open again for a full cooldown */
    sb_webhooks_breaker_record(&b, 0, 1, 1800);
    assert_int_equal(b.state, SB_BREAKER_OPEN);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 2299), 0);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 2300), 2);
    /* probe succeeds: closed, earlier failures forgotten */
    sb_webhooks_breaker_record(&b, 1, 1, 2350);
    assert_int_equal(b.state, SB_BREAKER_CLOSED);
    assert_int_equal(sb_webhooks_breaker_acquire(&b, 2360), 1);
    sb_webhooks_breaker_record(&b, 0, 0, 2400);
    sb_webhooks_breaker_record(&b, 0, 0, 2410);
    assert_int_equal(b.state, SB_BREAKER_CLOSED);
    sb_webhooks_breaker_record(&b, 0, 0, 2420);
    assert_int_equal(b.state, SB_BREAKER_OPEN);
    sb_webhooks_breaker_free(&b);

    /* threshold 1: the first failure opens */
    assert_int_equal(sb_webhooks_breaker_init(&b, 1, 10, 10), 0);
    sb_webhooks_breaker_record(&b, 0, 0, 5);
    assert_int_equal(b.state, SB_BREAKER_OPEN);
    sb_webhooks_breaker_free(&b);
}

static void test_parse_url(void **state)
{
    (void)state;
    sb_webhook_url_t u;
    assert_int_equal(sb_webhooks_parse_url("http://127.0.0.1:8081/hook?x=1#frag", &u), 0);
    assert_int_equal(u.is_ssl, 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.hostport, "127.0.0.1:8081");
    assert_string_equal(u.path, "/hook?x=1");
    assert_int_equal(u.port, 8081);
    sb_webhooks_url_free(&u);

    assert_int_equal(sb_webhooks_parse_url("https://api.example.com", &u), 0);
    assert_int_equal(u.is_ssl, 1);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.host, "api.example.com");
    assert_string_equal(u.path, "/");
    sb_webhooks_url_free(&u);

    assert_int_equal(sb_webhooks_parse_url("http://[::1]:9000/a", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:9000");
    assert_int_equal(u.port, 9000);
    sb_webhooks_url_free(&u);

    assert_int_equal(sb_webhooks_parse_url("http://h?q=1", &u), 0);
    assert_string_equal(u.path, "/?q=1");
    assert_int_equal(u.port, 80);
    sb_webhooks_url_free(&u);

    static const char *bad[] = {"ftp://h/",       "http://",        "http:///x",   "http://:80/",  "http://h:0/",
                                "http://h:65536", "http://h:8a/",   "http://u@h/", "http://h/a b", "http://h/\r\n",
                                "http://[::1/",   "http://[::1]x/", "http://h:/",  "HTTP://h/"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        if (sb_webhooks_parse_url(bad[i], &u) != SB_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
}

/* ------------------------------------------------------------ scripted server */

typedef struct reply {
    int status;
    const char *body;
    int delay_ms;
    int hang;   /* never answer: wait for the client to go away */
    int close;  /* answer with Connection: close */
    size_t big; /* answer with this many bytes of body instead */
} reply_t;

typedef struct reqrec {
    char key[300];
    char ctype[100];
    char line[300];
    char body[4096];
    int conn;
    uint64_t at;
} reqrec_t;

#define MAX_CONNS 32
#define MAX_REQS 64

static struct srv {
    int lfd;
    uint16_t port;
    pthread_t accept_th;
    pthread_t conn_th[MAX_CONNS];
    int conn_fd[MAX_CONNS];
    int nconns;
    volatile int stop;
    pthread_mutex_t mu;
    reply_t script[16];
    int nscript;
    reply_t dflt;
    reqrec_t reqs[MAX_REQS];
    int nreqs;
} S;

static int srv_nreqs(void)
{
    pthread_mutex_lock(&S.mu);
    int n = S.nreqs;
    pthread_mutex_unlock(&S.mu);
    return n;
}

/* Waits up to 50 ms for input; -1 stop, 0 nothing yet, 1 readable. */
static int wait_readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (S.stop)
        return -1;
    int r = poll(&p, 1, 50);
    return r > 0 ? 1 : (r < 0 && errno != EINTR ? -1 : 0);
}

static void header_value(const char *head, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nlen) == 0 && p[2 + nlen] == ':') {
            const char *v = p + 3 + nlen;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r");
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void *conn_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    int fd = S.conn_fd[idx];
    static _Thread_local char buf[65536];
    size_t have = 0;
    for (;;) {
        char *end;
        while ((end = memmem(buf, have, "\r\n\r\n", 4)) == NULL) {
            int r = wait_readable(fd);
            if (r < 0)
                goto out;
            if (r == 0)
                continue;
            ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char head[8192];
        size_t hl = head_len < sizeof(head) - 1 ? head_len : sizeof(head) - 1;
        memcpy(head, buf, hl);
        head[hl] = '\0';
        char cl[32];
        header_value(head, "Content-Length", cl, sizeof(cl));
        size_t blen = (size_t)strtoul(cl, NULL, 10);
        while (have < head_len + blen) {
            int r = wait_readable(fd);
            if (r < 0)
                goto out;
            if (r == 0)
                continue;
            ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        reply_t rep;
        pthread_mutex_lock(&S.mu);
        int rn = S.nreqs;
        if (rn < MAX_REQS) {
            reqrec_t *rec = &S.reqs[rn];
            memset(rec, 0, sizeof(*rec));
            header_value(head, "Idempotency-Key", rec->key, sizeof(rec->key));
            header_value(head, "Content-Type", rec->ctype, sizeof(rec->ctype));
            size_t ll = strcspn(head, "\r");
            memcpy(rec->line, head, ll < sizeof(rec->line) - 1 ? ll : sizeof(rec->line) - 1);
            memcpy(rec->body, buf + head_len, blen < sizeof(rec->body) - 1 ? blen : sizeof(rec->body) - 1);
            rec->conn = idx;
            rec->at = sb_mono_ms();
            S.nreqs++;
        }
        rep = rn < S.nscript ? S.script[rn] : S.dflt;
        pthread_mutex_unlock(&S.mu);
        memmove(buf, buf + head_len + blen, have - head_len - blen);
        have -= head_len + blen;

        if (rep.hang) {
            for (;;) {
                int r = wait_readable(fd);
                if (r < 0)
                    goto out;
                char c;
                if (r > 0 && read(fd, &c, 1) <= 0)
                    goto out;
            }
        }
        if (rep.delay_ms > 0)
            usleep((useconds_t)rep.delay_ms * 1000);
        size_t bl = rep.big != 0 ? rep.big : (rep.body != NULL ? strlen(rep.body) : 0);
        char rh[256];
        int n = snprintf(rh, sizeof(rh),
                         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n", rep.status,
                         bl, rep.close ? "Connection: close\r\n" : "");
        send_all(fd, rh, (size_t)n);
        if (rep.big != 0) {
            char *big = malloc(rep.big);
            memset(big, 'x', rep.big);
            send_all(fd, big, rep.big);
            free(big);
        } else if (bl != 0) {
            send_all(fd, rep.body, bl);
        }
        if (rep.close)
            goto out;
    }
out:
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        int r = wait_readable(S.lfd);
        if (r < 0)
            return NULL;
        if (r == 0)
            continue;
        int fd = accept(S.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        if (S.nconns >= MAX_CONNS) {
            close(fd);
            continue;
        }
        int idx = S.nconns;
        S.conn_fd[idx] = fd;
        pthread_create(&S.conn_th[idx], NULL, conn_main, (void *)(intptr_t)idx);
        S.nconns++;
    }
}

static void srv_start(const reply_t *script, int n, reply_t dflt)
{
    memset(&S, 0, sizeof(S));
    pthread_mutex_init(&S.mu, NULL);
    if (n > 0)
        memcpy(S.script, script, sizeof(*script) * (size_t)n);
    S.nscript = n;
    S.dflt = dflt;
    S.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(S.lfd >= 0);
    int one = 1;
    setsockopt(S.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(S.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(S.lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(S.lfd, (struct sockaddr *)&sa, &sl);
    S.port = ntohs(sa.sin_port);
    pthread_create(&S.accept_th, NULL, accept_main, NULL);
}

static void srv_stop(void)
{
    S.stop = 1;
    pthread_join(S.accept_th, NULL);
    for (int i = 0; i < S.nconns; i++)
        pthread_join(S.conn_th[i], NULL);
    close(S.lfd);
    pthread_mutex_destroy(&S.mu);
}

/* ------------------------------------------------------------ loop harness */

typedef struct result {
    int called;
    char err[64];
    int has_err;
    int status;
    char body[256];
    size_t len;
    uint64_t at;
} result_t;

static void on_result(void *data, const char *err, int status, const char *body, size_t len)
{
    result_t *r = data;
    r->called++;
    r->has_err = err != NULL;
    snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
    r->status = status;
    r->len = len;
    if (err == NULL)
        assert_non_null(body);
    else
        assert_null(body);
    size_t n = len < sizeof(r->body) - 1 ? len : sizeof(r->body) - 1;
    if (n != 0)
        memcpy(r->body, body, n);
    r->body[n] = '\0';
    r->at = sb_mono_ms();
}

typedef struct env {
    h2o_loop_t *loop;
    sb_config_t cfg;
    sb_webhooks_t *wh;
} env_t;

static void env_init(env_t *e, const char *spec2)
{
    memset(e, 0, sizeof(*e));
    e->loop = h2o_evloop_create();
    sb_config_init(&e->cfg);
    char spec[128];
    snprintf(spec, sizeof(spec), "ev*=http://127.0.0.1:%u/hook", (unsigned)S.port);
    e->cfg.webhooks.items = calloc(2, sizeof(char *));
    e->cfg.webhooks.items[0] = strdup(spec);
    e->cfg.webhooks.count = 1;
    if (spec2 != NULL) {
        e->cfg.webhooks.items[1] = strdup(spec2);
        e->cfg.webhooks.count = 2;
    }
    e->cfg.webhook_timeout_ms = 1000;
    e->cfg.webhook_retries = 3;
    e->cfg.webhook_backoff_ms = 50;
    e->cfg.webhook_backoff_max_ms = 1000;
}

static void env_create(env_t *e)
{
    e->wh = sb_webhooks_create(e->loop, &e->cfg);
    assert_non_null(e->wh);
}

static void run_until(env_t *e, const int *flag, uint64_t max_ms)
{
    uint64_t until = sb_mono_ms() + max_ms;
    while ((flag == NULL || *flag == 0) && sb_mono_ms() < until)
        h2o_evloop_run(e->loop, 10);
}

static void env_fini(env_t *e)
{
    sb_webhooks_destroy(e->wh);
    for (int i = 0; i < 5; i++)
        h2o_evloop_run(e->loop, 1);
    h2o_evloop_destroy(e->loop);
    sb_config_free(&e->cfg);
}

static const reply_t OK_EMPTY = {200, "", 0, 0, 0, 0};

static void test_ok_and_headers(void **state)
{
    (void)state;
    reply_t script[] = {{200, "[\"a\",1]", 0, 0, 0, 0}};
    srv_start(script, 1, OK_EMPTY);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    assert_int_equal(sb_webhooks_count(e.wh), 1);
    assert_non_null(strstr(sb_webhooks_url(e.wh, 0), "/hook"));
    result_t r = {0};
    const char *body = "{\"type\":\"event\",\"event\":\"ev1\"}";
    assert_int_equal(sb_webhooks_post(e.wh, 0, "node-sock-1", body, strlen(body), on_result, &r), 0);
    assert_int_equal(r.called, 0); /* never from inside post */
    run_until(&e, &r.called, 3000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.has_err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "[\"a\",1]");
    assert_int_equal(r.len, 7);
    assert_int_equal(srv_nreqs(), 1);
    assert_string_equal(S.reqs[0].line, "POST /hook HTTP/1.1");
    assert_string_equal(S.reqs[0].key, "node-sock-1");
    assert_string_equal(S.reqs[0].ctype, "application/json");
    assert_string_equal(S.reqs[0].body, body);
    sb_webhook_stats_t st;
    assert_int_equal(sb_webhooks_stats(e.wh, 0, &st), 0);
    assert_int_equal(st.calls_ok, 1);
    assert_int_equal(st.calls_failed, 0);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.state, 0);
    /* bad arguments */
    assert_int_equal(sb_webhooks_post(e.wh, 1, "k", "{}", 2, on_result, &r), SB_EINVAL);
    assert_int_equal(sb_webhooks_post(e.wh, -1, "k", "{}", 2, on_result, &r), SB_EINVAL);
    assert_int_equal(sb_webhooks_post(e.wh, 0, "bad\r\nkey", "{}", 2, on_result, &r), SB_EINVAL);
    assert_int_equal(sb_webhooks_post(e.wh, 0, "", "{}", 2, on_result, &r), SB_EINVAL);
    env_fini(&e);
    srv_stop();
}

static void test_retries_same_key_growing_delays(void **state)
{
    (void)state;
    reply_t script[] = {{500, "no", 0, 0, 0, 0}, {503, "", 0, 0, 0, 0}, {502, "", 0, 0, 0, 0}, {200, "[]", 0, 0, 0, 0}};
    srv_start(script, 4, OK_EMPTY);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "n-s-7", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 5000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.has_err, 0);
    assert_string_equal(r.body, "[]");
    assert_int_equal(srv_nreqs(), 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(S.reqs[i].key, "n-s-7");
    uint64_t g1 = S.reqs[1].at - S.reqs[0].at, g2 = S.reqs[2].at - S.reqs[1].at, g3 = S.reqs[3].at - S.reqs[2].at;
    /* nominal 37..50, 75..100, 150..200 ms, plus tick and scheduling slack */
    assert_true(g1 >= 35 && g1 < 150);
    assert_true(g2 >= 73 && g2 < 250);
    assert_true(g3 >= 148 && g3 < 400);
    assert_true(g1 < g2 && g2 < g3);
    sb_webhook_stats_t st;
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.calls_ok, 1);
    env_fini(&e);
    srv_stop();
}

static void test_retries_exhausted(void **state)
{
    (void)state;
    reply_t dflt = {500, "", 0, 0, 0, 0};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    e.cfg.webhook_retries = 2;
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 5000);
    assert_int_equal(r.called, 1);
    assert_string_equal(r.err, "http 5xx");
    assert_int_equal(r.status, 500);
    assert_int_equal(srv_nreqs(), 3);
    env_fini(&e);
    srv_stop();
}

static void test_no_retry_on_4xx(void **state)
{
    (void)state;
    reply_t dflt = {400, "{\"bad\":true}", 0, 0, 0, 0};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 3000);
    run_until(&e, NULL, 300); /* a retry would come within 50 ms */
    assert_int_equal(r.called, 1);
    assert_string_equal(r.err, "http 4xx");
    assert_int_equal(r.status, 400);
    assert_int_equal(srv_nreqs(), 1);
    sb_webhook_stats_t st;
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.calls_failed, 1);
    assert_int_equal(st.retries, 0);
    env_fini(&e);
    srv_stop();
}

static void test_timeout(void **state)
{
    (void)state;
    reply_t dflt = {0, NULL, 0, 1, 0, 0};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    e.cfg.webhook_timeout_ms = 200;
    e.cfg.webhook_retries = 1;
    env_create(&e);
    result_t r = {0};
    uint64_t t0 = sb_mono_ms();
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 5000);
    uint64_t took = r.at - t0;
    assert_int_equal(r.called, 1);
    assert_string_equal(r.err, "timeout");
    assert_int_equal(r.status, 0);
    assert_int_equal(srv_nreqs(), 2);
    /* two attempts of 200 ms and a 37..50 ms pause */
    assert_true(took >= 430 && took < 1000);
    env_fini(&e);
    srv_stop();
}

static void test_slow_answer_within_deadline(void **state)
{
    (void)state;
    reply_t dflt = {200, "[\"slow\"]", 150, 0, 0, 0};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    e.cfg.webhook_timeout_ms = 500;
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 3000);
    assert_int_equal(r.has_err, 0);
    assert_string_equal(r.body, "[\"slow\"]");
    assert_int_equal(srv_nreqs(), 1);
    env_fini(&e);
    srv_stop();
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    srv_start(NULL, 0, OK_EMPTY);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    for (int i = 0; i < 3; i++) {
        result_t r = {0};
        assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
        run_until(&e, &r.called, 3000);
        assert_int_equal(r.has_err, 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
    }
    assert_int_equal(srv_nreqs(), 3);
    assert_int_equal(S.reqs[0].conn, S.reqs[1].conn);
    assert_int_equal(S.reqs[1].conn, S.reqs[2].conn);
    assert_int_equal(S.nconns, 1);
    env_fini(&e);
    srv_stop();
}

static void test_connection_close_then_new_connection(void **state)
{
    (void)state;
    reply_t script[] = {{200, "[1]", 0, 0, 1, 0}};
    srv_start(script, 1, OK_EMPTY);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    for (int i = 0; i < 2; i++) {
        result_t r = {0};
        assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
        run_until(&e, &r.called, 3000);
        assert_int_equal(r.has_err, 0);
    }
    assert_int_equal(srv_nreqs(), 2);
    assert_int_not_equal(S.reqs[0].conn, S.reqs[1].conn);
    env_fini(&e);
    srv_stop();
}

static void test_breaker_opens_and_probe_closes(void **state)
{
    (void)state;
    /* the first probe is answered slowly so the test can poke at half-open */
    reply_t script[] = {{500, "", 0, 0, 0, 0}, {500, "", 0, 0, 0, 0}, {500, "", 150, 0, 0, 0}};
    srv_start(script, 3, (reply_t){200, "[\"back\"]", 0, 0, 0, 0});
    env_t e;
    env_init(&e, NULL);
    e.cfg.webhook_retries = 0;
    e.cfg.webhook_breaker_failures = 2;
    e.cfg.webhook_breaker_cooldown_ms = 300;
    env_create(&e);
    for (int i = 0; i < 2; i++) {
        result_t r = {0};
        assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
        run_until(&e, &r.called, 3000);
        assert_string_equal(r.err, "http 5xx");
    }
    assert_int_equal(sb_webhooks_is_open(e.wh, 0), 1);
    sb_webhook_stats_t st;
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.state, 1);
    result_t rej = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &rej), SB_EAGAIN);
    run_until(&e, NULL, 50);
    assert_int_equal(rej.called, 0);
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.rejected_open, 1);
    assert_int_equal(srv_nreqs(), 2);

    /* after the cooldown: a failing probe opens it again */
    run_until(&e, NULL, 320);
    assert_int_equal(sb_webhooks_is_open(e.wh, 0), 0);
    result_t probe = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &probe), 0);
    /* while the probe is out, everything else is refused */
    run_until(&e, NULL, 60);
    assert_int_equal(probe.called, 0);
    assert_int_equal(sb_webhooks_is_open(e.wh, 0), 1);
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.state, 2);
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &rej), SB_EAGAIN);
    run_until(&e, &probe.called, 3000);
    assert_string_equal(probe.err, "http 5xx");
    assert_int_equal(sb_webhooks_is_open(e.wh, 0), 1);
    assert_int_equal(srv_nreqs(), 3);

    /* after another cooldown: the backend is back, the probe closes it */
    run_until(&e, NULL, 320);
    result_t probe2 = {0}, other = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &probe2), 0);
    /* a second call accepted in the same instant loses the race for the probe */
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &other), 0);
    run_until(&e, &probe2.called, 3000);
    run_until(&e, &other.called, 3000);
    assert_int_equal(probe2.has_err, 0);
    assert_string_equal(probe2.body, "[\"back\"]");
    assert_string_equal(other.err, "circuit open");
    assert_int_equal(sb_webhooks_is_open(e.wh, 0), 0);
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.state, 0);
    result_t after = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &after), 0);
    run_until(&e, &after.called, 3000);
    assert_int_equal(after.has_err, 0);
    assert_int_equal(srv_nreqs(), 5);
    env_fini(&e);
    srv_stop();
}

static void test_connection_refused(void **state)
{
    (void)state;
    srv_start(NULL, 0, OK_EMPTY);
    env_t e;
    env_init(&e, "x=http://127.0.0.1:1/nobody");
    e.cfg.webhook_retries = 2;
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_match(e.wh, "x", 0), 1);
    assert_int_equal(sb_webhooks_post(e.wh, 1, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 5000);
    assert_string_equal(r.err, "connection failed");
    sb_webhook_stats_t st;
    sb_webhooks_stats(e.wh, 1, &st);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.calls_failed, 1);
    env_fini(&e);
    srv_stop();
}

static void test_response_too_large(void **state)
{
    (void)state;
    reply_t dflt = {200, NULL, 0, 0, 0, SB_WEBHOOK_MAX_RESPONSE + 1};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    env_create(&e);
    result_t r = {0};
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r), 0);
    run_until(&e, &r.called, 5000);
    assert_string_equal(r.err, "response too large");
    assert_int_equal(srv_nreqs(), 1); /* not retried */
    env_fini(&e);
    srv_stop();
}

static void test_queue_bound_and_shutdown(void **state)
{
    (void)state;
    reply_t dflt = {0, NULL, 0, 1, 0, 0};
    srv_start(NULL, 0, dflt);
    env_t e;
    env_init(&e, NULL);
    e.cfg.webhook_max_inflight = 1;
    e.cfg.webhook_queue = 2;
    env_create(&e);
    result_t r[4];
    memset(r, 0, sizeof(r));
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r[0]), 0);
    run_until(&e, NULL, 50); /* r[0] in flight, hanging */
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r[1]), 0);
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r[2]), 0);
    assert_int_equal(sb_webhooks_post(e.wh, 0, "k", "{}", 2, on_result, &r[3]), SB_EAGAIN);
    run_until(&e, NULL, 50);
    assert_int_equal(srv_nreqs(), 1); /* one in flight at most */
    sb_webhook_stats_t st;
    sb_webhooks_stats(e.wh, 0, &st);
    assert_int_equal(st.rejected_queue, 1);
    sb_webhooks_destroy(e.wh);
    e.wh = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].called, 1);
        assert_string_equal(r[i].err, "shutdown");
    }
    assert_int_equal(r[3].called, 0);
    env_fini(&e);
    srv_stop();
}

static void test_match_and_lifecycle(void **state)
{
    (void)state;
    srv_start(NULL, 0, OK_EMPTY);
    env_t e;
    env_init(&e, "*connect=http://127.0.0.1:9/l");
    env_create(&e);
    assert_int_equal(sb_webhooks_match(e.wh, "ev", 0), 0);
    assert_int_equal(sb_webhooks_match(e.wh, "event:x", 0), 0);
    assert_int_equal(sb_webhooks_match(e.wh, "other", 0), -1);
    assert_int_equal(sb_webhooks_match(e.wh, "reconnect", 0), 1);
    /* lifecycle entries only with --webhook-lifecycle */
    assert_int_equal(sb_webhooks_match(e.wh, "connect", 1), -1);
    assert_int_equal(sb_webhooks_match(e.wh, "disconnect", 1), -1);
    assert_int_equal(sb_webhooks_match(NULL, "ev", 0), -1);
    env_fini(&e);

    env_init(&e, "*connect=http://127.0.0.1:9/l");
    e.cfg.webhook_lifecycle = 1;
    env_create(&e);
    assert_int_equal(sb_webhooks_match(e.wh, "connect", 1), 1);
    assert_int_equal(sb_webhooks_match(e.wh, "disconnect", 1), 1);
    assert_int_equal(sb_webhooks_count(e.wh), 2);
    assert_string_equal(sb_webhooks_url(e.wh, 1), "http://127.0.0.1:9/l");
    assert_null(sb_webhooks_url(e.wh, 2));
    env_fini(&e);

    /* an https hook gets its TLS context; a bad URL disables webhooks (NULL) */
    env_init(&e, "s*=https://localhost:1/x");
    env_create(&e);
    assert_int_equal(sb_webhooks_match(e.wh, "sx", 0), 1);
    env_fini(&e);
    env_init(&e, "s*=http://h:99999/x");
    assert_null(sb_webhooks_create(e.loop, &e.cfg));
    env_fini(&e);

    /* no webhooks: NULL */
    sb_config_t cfg;
    sb_config_init(&cfg);
    h2o_loop_t *loop = h2o_evloop_create();
    assert_null(sb_webhooks_create(loop, &cfg));
    sb_webhooks_destroy(NULL);
    h2o_evloop_destroy(loop);
    sb_config_free(&cfg);
    srv_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_ok_and_headers),
        cmocka_unit_test(test_retries_same_key_growing_delays),
        cmocka_unit_test(test_retries_exhausted),
        cmocka_unit_test(test_no_retry_on_4xx),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_slow_answer_within_deadline),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_connection_close_then_new_connection),
        cmocka_unit_test(test_breaker_opens_and_probe_closes),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_response_too_large),
        cmocka_unit_test(test_queue_bound_and_shutdown),
        cmocka_unit_test(test_match_and_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
