// The metrics endpoint: GET /metrics answers 200 with the exposition, other
// paths 404, other methods 405; one request per connection, closed after
// the response. Requests are bounded in size and time and connections in
// number, so that a hostile or broken client costs gridd a few kilobytes.
// After the response gridd half-closes and reads what the client still
// sends until it hangs up (or the deadline): closing with unread input
// would reset the connection and could destroy the response in flight.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics_http.h"

#include "daemon/job.h"
#include "daemon/listen.h"

#define SWEEP_MS 500

typedef struct {
    uv_tcp_t tcp; // first: the handle's address is the connection's
    bool used;    // from accept to the close callback
    bool answered; // the response is queued: input is discarded
    int64_t deadline;
    uint64_t seq; // accept order
    size_t len;
    char request[METRICS_HTTP_MAX_REQUEST];
    uv_write_t write;
    uv_shutdown_t shutdown;
    char *response; // while written
} http_conn;

// Static, and every handle's data is the server: the shutdown walk
// (main.c) closes gridd's own handles without a callback, which leaves
// nothing here to free.
static struct {
    uv_tcp_t listener;
    uv_timer_t sweep;
    http_conn conns[METRICS_HTTP_MAX_CONNS];
    bool accept_waiting; // a connection waits in the backlog for a free slot
    uint64_t accepted;
} http;

static void on_closed(uv_handle_t *h);

static void close_conn(http_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    if (status < 0)
        close_conn(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    http_conn *c = req->data;
    free(c->response);
    c->response = NULL;
    c->shutdown.data = c;
    if (status < 0 || uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown))
        close_conn(c);
}

static void respond(http_conn *c, metrics_http_status st, const char *type, const char *body,
                    size_t body_len)
{
    static const char *const reasons[NUM_HTTP_STATUSES] = {
        "OK", "Bad Request", "Not Found", "Method Not Allowed",
        "Request Header Fields Too Large"};
    server *srv = c->tcp.data;
    c->answered = true;
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     metrics_http_codes[st], reasons[st], type, body_len,
                     st == HTTP_BAD_METHOD ? "Allow: GET\r\n" : "");
    c->response = malloc((size_t)n + body_len);
    if (!c->response) {
        srv->metrics.http_dropped++;
        close_conn(c);
        return;
    }
    memcpy(c->response, head, (size_t)n);
    memcpy(c->response + n, body, body_len);
    srv->metrics.http_responses[st]++;
    uv_buf_t buf = uv_buf_init(c->response, (unsigned)((size_t)n + body_len));
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written)) {
        free(c->response);
        c->response = NULL;
        close_conn(c);
    }
}

static void respond_text(http_conn *c, metrics_http_status st, const char *body)
{
    respond(c, st, "text/plain; charset=utf-8", body, strlen(body));
}

// The gauges' values now.
static void serve_metrics(http_conn *c)
{
    server *srv = c->tcp.data;
    const char *state_names[NUM_JOB_STATES];
    int in_state[NUM_JOB_STATES] = {0};
    for (int i = 0; i < NUM_JOB_STATES; i++)
        state_names[i] = job_state_name((job_state)i);
    metrics_job *jobs = calloc((size_t)srv->num_jobs + 1, sizeof *jobs);
    if (!jobs) {
        srv->metrics.http_dropped++;
        close_conn(c);
        return;
    }
    metrics_snapshot s = {.state_names = state_names, .jobs_in_state = in_state,
                          .num_states = NUM_JOB_STATES,
                          .worker_connections = srv->worker_connections,
                          .workers_pending = srv->pending, .jobs = jobs};
    for (job *j = srv->jobs; j; j = j->next) {
        in_state[j->state]++;
        s.workers_joined += j->rec.roster.live;
        metrics_job *mj = &jobs[s.num_jobs++];
        *mj = (metrics_job){.name = j->rec.name, .generation = j->rec.generation,
                            .joined = j->rec.roster.live, .world_size = j->plan.world_size};
        job_progress(j, mj->modules, &mj->num_modules);
    }
    char *text;
    size_t len;
    if (metrics_format(&srv->metrics, &s, &text, &len)) {
        srv->metrics.http_dropped++;
        close_conn(c);
    } else {
        respond(c, HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
    }
    free(jobs);
}

// "METHOD TARGET HTTP/1.x" then headers, which are ignored.
static void handle_request(http_conn *c, const char *line_end)
{
    const char *req = c->request;
    const char *sp1 = memchr(req, ' ', (size_t)(line_end - req));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == req || sp2 == sp1 + 1 || line_end - sp2 - 1 < 8 ||
        strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        respond_text(c, HTTP_BAD_REQUEST, "expected a request line: GET /metrics HTTP/1.1\n");
        return;
    }
    if (sp1 - req != 3 || strncmp(req, "GET", 3) != 0) {
        respond_text(c, HTTP_BAD_METHOD, "only GET is served\n");
        return;
    }
    const char *path = sp1 + 1;
    size_t path_len = (size_t)(sp2 - path);
    const char *query = memchr(path, '?', path_len);
    if (query)
        path_len = (size_t)(query - path);
    if (path_len == 8 && strncmp(path, "/metrics", 8) == 0)
        serve_metrics(c);
    else
        respond_text(c, HTTP_NOT_FOUND, "not found; metrics are at /metrics\n");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_conn *c = (http_conn *)h;
    if (c->answered) { // discarded
        *buf = uv_buf_init(c->request, sizeof c->request);
        return;
    }
    // One byte stays free for the terminating NUL.
    *buf = uv_buf_init(c->request + c->len, (unsigned)(sizeof c->request - 1 - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    http_conn *c = (http_conn *)stream;
    if (nread == 0)
        return;
    if (nread < 0) { // the client hung up (before a complete request, or after the answer)
        close_conn(c);
        return;
    }
    if (c->answered)
        return;
    c->len += (size_t)nread;
    c->request[c->len] = '\0';
    if (strlen(c->request) != c->len) {
        respond_text(c, HTTP_BAD_REQUEST, "NUL byte in the request\n");
        return;
    }
    const char *end = strstr(c->request, "\r\n\r\n");
    if (!end)
        end = strstr(c->request, "\n\n");
    if (end) {
        const char *line_end = strchr(c->request, '\n');
        if (line_end > c->request && line_end[-1] == '\r')
            line_end--;
        handle_request(c, line_end);
        return;
    }
    if (c->len == sizeof c->request - 1)
        respond_text(c, HTTP_HEADERS_TOO_LARGE, "request over 4096 bytes\n");
}

static void accept_into(server *srv, http_conn *c)
{
    memset(c, 0, sizeof *c);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = srv;
    c->used = true;
    c->deadline = gridd_now_ms() + METRICS_HTTP_TIMEOUT_MS;
    c->seq = http.accepted++;
    if (uv_accept((uv_stream_t *)&http.listener, (uv_stream_t *)&c->tcp) ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
        close_conn(c);
}

static void on_closed(uv_handle_t *h)
{
    http_conn *c = (http_conn *)h;
    server *srv = h->data;
    c->used = false;
    if (http.accept_waiting && !srv->stopping) {
        http.accept_waiting = false;
        accept_into(srv, c);
    }
}

// At the cap the oldest connection makes room: a scrape is answered as
// soon as its request is in, so the oldest is the likeliest to be stuck.
static void on_connection(uv_stream_t *listener, int status)
{
    server *srv = listener->data;
    if (status < 0)
        return;
    http_conn *oldest = NULL;
    for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++) {
        http_conn *c = &http.conns[i];
        if (!c->used) {
            accept_into(srv, c);
            return;
        }
        if (!uv_is_closing((uv_handle_t *)&c->tcp) && (!oldest || c->seq < oldest->seq))
            oldest = c;
    }
    // Not accepting leaves the connection in the backlog and pauses the
    // listener until a slot's close callback takes it.
    http.accept_waiting = true;
    if (oldest) {
        srv->metrics.http_dropped++;
        close_conn(oldest);
    }
}

static void on_sweep(uv_timer_t *t)
{
    server *srv = t->data;
    int64_t now = gridd_now_ms();
    for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++) {
        http_conn *c = &http.conns[i];
        if (c->used && !uv_is_closing((uv_handle_t *)&c->tcp) && c->deadline <= now) {
            srv->metrics.http_dropped++;
            close_conn(c);
        }
    }
}

int metrics_listen(server *srv)
{
    const char *addr = srv->opt.metrics;
    if (!addr)
        return 0;
    int rc = listen_bind(srv->loop, &http.listener, "--metrics", addr, "127.0.0.1:9420");
    if (rc > 0)
        return -1;
    http.listener.data = srv;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&http.listener, 64, on_connection);
    if (rc) {
        fprintf(stderr, "gridd: cannot serve --metrics on %s: %s (is the port in use?)\n", addr,
                uv_strerror(rc));
        return -1;
    }
    char bound[64]; // [IPv6]:port
    listen_bound(&http.listener, bound, sizeof bound);
    uv_timer_init(srv->loop, &http.sweep);
    http.sweep.data = srv;
    uv_timer_start(&http.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    gridd_log("serving metrics addr=%s path=/metrics", bound);
    return 0;
}
