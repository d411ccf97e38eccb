// gridd's metrics in the Prometheus text format 0.0.4: families with HELP
// and TYPE lines, counters ending in _total, a cumulative histogram.
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"

const double metrics_join_bounds[METRICS_JOIN_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

const int metrics_http_codes[NUM_HTTP_STATUSES] = {200, 400, 404, 405, 431};

static const char *const refusal_names[NUM_REFUSALS] = {"hello_timeout", "max_pending",
                                                         "max_connections", "accept_error"};

void metrics_observe_join(metrics_counters *m, double seconds)
{
    int b = 0;
    while (b < METRICS_JOIN_BUCKETS && seconds > metrics_join_bounds[b])
        b++;
    m->join_buckets[b]++;
    m->join_count++;
    m->join_sum += seconds;
}

// ---- a growing text buffer

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 > t->len + (size_t)n + 1 ? t->cap * 2 : t->len + (size_t)n + 1;
        char *p = realloc(t->p, cap);
        if (!p)
            t->failed = true;
        else {
            t->p = p;
            t->cap = cap;
        }
    }
}

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

// A label value with \, " and newline escaped as the format requires.
static void put_label_value(text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(t, "\\%c", *v);
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

// ---- label names from the wire schema

// "ERROR_BAD_FRAME" -> "bad_frame"
static void error_kind(const char *enum_name, char *out, size_t len)
{
    const char *s = strncmp(enum_name, "ERROR_", 6) == 0 ? enum_name + 6 : enum_name;
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
}

const char *metrics_message_name(int msg_case)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&hgrid__envelope__descriptor, (unsigned)msg_case);
    return f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f->name : "?";
}

// One sample per Envelope message type (its oneof field name).
static void put_by_type(text *t, const char *name, const uint64_t *counts)
{
    const ProtobufCMessageDescriptor *d = &hgrid__envelope__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->id < METRICS_MSG_TYPES)
            put(t, "%s{type=\"%s\"} %llu\n", name, f->name, (unsigned long long)counts[f->id]);
    }
}

static void put_jobs(text *t, const metrics_snapshot *s)
{
    family(t, "gridd_jobs", "gauge", "Jobs held, by state.");
    for (int i = 0; i < s->num_states; i++)
        put(t, "gridd_jobs{state=\"%s\"} %d\n", s->state_names[i], s->jobs_in_state[i]);
    static const char *const names[] = {"gridd_job_world_size", "gridd_job_workers_joined",
                                        "gridd_job_generation"};
    static const char *const helps[] = {
        "Workers the job's layout needs.", "Workers holding a slot in the job.",
        "The job's current generation (generations started, gridd restarts included)."};
    for (int k = 0; k < 3; k++) {
        family(t, names[k], "gauge", helps[k]);
        for (int i = 0; i < s->num_jobs; i++) {
            const metrics_job *j = &s->jobs[i];
            put(t, "%s{job=\"", names[k]);
            put_label_value(t, j->name);
            unsigned long long v = k == 0 ? (unsigned long long)j->world_size
                                   : k == 1 ? (unsigned long long)j->joined
                                            : (unsigned long long)j->generation;
            put(t, "\"} %llu\n", v);
        }
    }
}

// Per job and module: the latest step, the loss and tokens/s (Grafana draws
// the loss curve from these); a module without a loss has no loss sample.
static void put_progress(text *t, const metrics_snapshot *s)
{
    static const char *const names[] = {"gridd_job_step", "gridd_job_loss",
                                        "gridd_job_tokens_per_second"};
    static const char *const helps[] = {
        "The latest training step a rank of the module reported.",
        "The module's loss: the mean over its ranks that compute one (the LLM's last stage).",
        "The module's tokens/s: the slowest rank's (each reports the global batch's)."};
    for (int k = 0; k < 3; k++) {
        family(t, names[k], "gauge", helps[k]);
        for (int i = 0; i < s->num_jobs; i++)
            for (int mi = 0; mi < s->jobs[i].num_modules; mi++) {
                const metrics_module *p = &s->jobs[i].modules[mi];
                if (p->reporting == 0 || (k == 1 && p->loss_ranks == 0))
                    continue;
                put(t, "%s{job=\"", names[k]);
                put_label_value(t, s->jobs[i].name);
                put(t, "\",module=\"%s\"} ", p->module);
                if (k == 0)
                    put(t, "%llu\n", (unsigned long long)p->step);
                else
                    put(t, "%.9g\n", k == 1 ? p->loss : p->tokens_per_s);
            }
    }
}

static void put_workers(text *t, const metrics_counters *m, const metrics_snapshot *s)
{
    family(t, "gridd_worker_connections", "gauge", "Open worker connections.");
    put(t, "gridd_worker_connections %d\n", s->worker_connections);
    family(t, "gridd_workers_pending", "gauge", "Worker connections without an accepted Hello.");
    put(t, "gridd_workers_pending %d\n", s->workers_pending);
    family(t, "gridd_workers_joined", "gauge", "Workers holding a slot in a job.");
    put(t, "gridd_workers_joined %d\n", s->workers_joined);
    family(t, "gridd_generations_started_total", "counter", "Generations started (all jobs).");
    put(t, "gridd_generations_started_total %llu\n", (unsigned long long)m->generations_started);
    family(t, "gridd_generation_aborts_total", "counter", "Generations aborted (all jobs).");
    put(t, "gridd_generation_aborts_total %llu\n", (unsigned long long)m->aborts);
    family(t, "gridd_jobs_ended_total", "counter",
           "Jobs that ended since gridd started, by outcome.");
    static const char *const outcomes[] = {"finished", "failed", "cancelled"};
    for (int i = 0; i < 3; i++)
        put(t, "gridd_jobs_ended_total{outcome=\"%s\"} %llu\n", outcomes[i],
            (unsigned long long)m->jobs_ended[i]);
    family(t, "gridd_heartbeat_timeouts_total", "counter",
           "Workers dropped after --heartbeat-timeout without a frame.");
    put(t, "gridd_heartbeat_timeouts_total %llu\n", (unsigned long long)m->heartbeat_timeouts);
    family(t, "gridd_ready_timeouts_total", "counter",
           "Workers dropped after --ready-timeout without Ready.");
    put(t, "gridd_ready_timeouts_total %llu\n", (unsigned long long)m->ready_timeouts);
    family(t, "gridd_loop_busy_max_seconds", "gauge",
           "The longest event-loop iteration since start (work between two waits).");
    put(t, "gridd_loop_busy_max_seconds %.3f\n", (double)m->loop_busy_max_ms / 1000);
}

static void put_join_latency(text *t, const metrics_counters *m)
{
    const char *name = "gridd_join_latency_seconds";
    family(t, name, "histogram",
           "From a worker's accepted Hello to its first Assignment sent, seconds.");
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_JOIN_BUCKETS; b++) {
        cumulative += m->join_buckets[b];
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_join_bounds[b],
            (unsigned long long)cumulative);
    }
    cumulative += m->join_buckets[METRICS_JOIN_BUCKETS];
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    put(t, "%s_sum %.9g\n%s_count %llu\n", name, m->join_sum, name,
        (unsigned long long)m->join_count);
}

static void put_traffic(text *t, const metrics_counters *m)
{
    family(t, "gridd_frames_received_total", "counter", "Frames decoded, by message type.");
    put_by_type(t, "gridd_frames_received_total", m->frames_in);
    family(t, "gridd_frames_sent_total", "counter", "Frames sent, by message type.");
    put_by_type(t, "gridd_frames_sent_total", m->frames_out);
    family(t, "gridd_received_bytes_total", "counter", "Bytes read from workers and hgridctl.");
    put(t, "gridd_received_bytes_total %llu\n", (unsigned long long)m->bytes_in);
    family(t, "gridd_sent_bytes_total", "counter", "Bytes sent to workers and hgridctl.");
    put(t, "gridd_sent_bytes_total %llu\n", (unsigned long long)m->bytes_out);
    family(t, "gridd_errors_total", "counter", "Error replies sent, by error code.");
    const ProtobufCEnumDescriptor *d = &hgrid__error_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        int code = d->values[i].value;
        if (code <= 0 || code >= METRICS_ERROR_CODES)
            continue;
        char kind[64];
        error_kind(d->values[i].name, kind, sizeof kind);
        put(t, "gridd_errors_total{kind=\"%s\"} %llu\n", kind,
            (unsigned long long)m->errors[code]);
    }
    family(t, "gridd_connections_accepted_total", "counter", "Connections accepted, by kind.");
    put(t, "gridd_connections_accepted_total{kind=\"worker\"} %llu\n",
        (unsigned long long)m->accepted_workers);
    put(t, "gridd_connections_accepted_total{kind=\"control\"} %llu\n",
        (unsigned long long)m->accepted_control);
    family(t, "gridd_connections_refused_total", "counter",
           "Worker connections turned away before a Hello, by reason.");
    for (int r = 0; r < NUM_REFUSALS; r++)
        put(t, "gridd_connections_refused_total{reason=\"%s\"} %llu\n", refusal_names[r],
            (unsigned long long)m->refused[r]);
}

static void put_http(text *t, const metrics_counters *m)
{
    family(t, "gridd_metrics_responses_total", "counter",
           "Answers of this endpoint, by HTTP status.");
    for (int i = 0; i < NUM_HTTP_STATUSES; i++)
        put(t, "gridd_metrics_responses_total{code=\"%d\"} %llu\n", metrics_http_codes[i],
            (unsigned long long)m->http_responses[i]);
    family(t, "gridd_metrics_dropped_total", "counter",
           "Endpoint connections closed without an answer (timed out, or evicted at the cap).");
    put(t, "gridd_metrics_dropped_total %llu\n", (unsigned long long)m->http_dropped);
}

int metrics_format(const metrics_counters *m, const metrics_snapshot *s, char **out, size_t *len)
{
    text t = {.p = malloc(16384), .cap = 16384};
    t.failed = !t.p;
    put_jobs(&t, s);
    put_progress(&t, s);
    put_workers(&t, m, s);
    put_join_latency(&t, m);
    put_traffic(&t, m);
    put_http(&t, m);
    if (t.failed) {
        free(t.p);
        return -1;
    }
    *out = t.p;
    *len = t.len;
    return 0;
}
