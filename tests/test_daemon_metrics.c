// gridd's metrics exposition: known counters give known sample lines, the
// histogram is cumulative and ends in +Inf == _count, label values are
// escaped, and every sample follows its family's HELP and TYPE lines.
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"
#include "tests/check.h"

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

// Every sample's family (histogram suffixes stripped) was declared by a
// HELP then a TYPE line before it; no family is declared twice.
static void check_structure(const char *text)
{
    char families[64][64];
    int num_families = 0, samples = 0;
    char last_help[64] = "";
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        CHECK(end != NULL, "the exposition ends in a newline");
        if (!end)
            return;
        char name[64];
        if (sscanf(line, "# HELP %63s", name) == 1) {
            snprintf(last_help, sizeof last_help, "%s", name);
        } else if (sscanf(line, "# TYPE %63s", name) == 1) {
            CHECK(strcmp(name, last_help) == 0, "TYPE %s right after its HELP", name);
            for (int i = 0; i < num_families; i++)
                CHECK(strcmp(families[i], name) != 0, "family %s declared twice", name);
            if (num_families < 64)
                snprintf(families[num_families++], 64, "%s", name);
        } else {
            size_t n = strcspn(line, "{ ");
            CHECK(n > 0 && n < sizeof name, "sample line with a name: %.40s", line);
            snprintf(name, sizeof name, "%.*s", (int)n, line);
            const char *family = num_families ? families[num_families - 1] : "";
            size_t fn = strlen(family);
            bool ok = strcmp(name, family) == 0 ||
                      (strncmp(name, family, fn) == 0 &&
                       (!strcmp(name + fn, "_bucket") || !strcmp(name + fn, "_sum") ||
                        !strcmp(name + fn, "_count")));
            CHECK(ok, "sample %s belongs to the family declared before it (%s)", name, family);
            samples++;
        }
        line = end + 1;
    }
    CHECK(num_families >= 20, "%d families", num_families);
    CHECK(samples > 60, "%d samples", samples);
}

int main(void)
{
    metrics_counters m;
    memset(&m, 0, sizeof m);
    // 0.001 is on a bound: le is "less or equal".
    const double joins[] = {0.0005, 0.001, 0.003, 2.0, 100.0};
    for (int i = 0; i < 5; i++)
        metrics_observe_join(&m, joins[i]);
    metrics_frame_in(&m, HGRID__ENVELOPE__MSG_HELLO);
    metrics_frame_in(&m, HGRID__ENVELOPE__MSG_HELLO);
    metrics_frame_in(&m, HGRID__ENVELOPE__MSG_HEARTBEAT);
    Hgrid__Envelope env;
    Hgrid__Error error;
    wire_envelope_init(&env);
    hgrid__error__init(&error);
    error.code = HGRID__ERROR_CODE__ERROR_BAD_TOKEN;
    env.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    env.error = &error;
    metrics_frame_out(&m, &env, 20);
    m.bytes_in = 1234;
    m.refused[REFUSED_MAX_PENDING] = 7;
    m.http_responses[HTTP_NOT_FOUND] = 2;

    const char *states[] = {"waiting", "running"};
    const int in_state[] = {1, 2};
    const metrics_job jobs[] = {{.name = "demo", .generation = 3, .joined = 7, .world_size = 8},
                                {.name = "a\"b\\c", .generation = 0, .joined = 0, .world_size = 2}};
    metrics_snapshot s = {.state_names = states, .jobs_in_state = in_state, .num_states = 2,
                          .worker_connections = 9, .workers_pending = 1, .workers_joined = 7,
                          .jobs = jobs, .num_jobs = 2};
    char *text;
    size_t len;
    CHECK(metrics_format(&m, &s, &text, &len) == 0, "formatted");
    CHECK_EQ(strlen(text), len);

    const char *want[] = {
        "# TYPE gridd_jobs gauge",
        "gridd_jobs{state=\"waiting\"} 1",
        "gridd_jobs{state=\"running\"} 2",
        "gridd_job_world_size{job=\"demo\"} 8",
        "gridd_job_workers_joined{job=\"demo\"} 7",
        "gridd_job_generation{job=\"demo\"} 3",
        "gridd_job_world_size{job=\"a\\\"b\\\\c\"} 2",
        "gridd_worker_connections 9",
        "gridd_workers_pending 1",
        "gridd_workers_joined 7",
        "# TYPE gridd_join_latency_seconds histogram",
        "gridd_join_latency_seconds_bucket{le=\"0.001\"} 2",
        "gridd_join_latency_seconds_bucket{le=\"0.0025\"} 2",
        "gridd_join_latency_seconds_bucket{le=\"0.005\"} 3",
        "gridd_join_latency_seconds_bucket{le=\"1\"} 3",
        "gridd_join_latency_seconds_bucket{le=\"2.5\"} 4",
        "gridd_join_latency_seconds_bucket{le=\"30\"} 4",
        "gridd_join_latency_seconds_bucket{le=\"+Inf\"} 5",
        "gridd_join_latency_seconds_sum 102.0045",
        "gridd_join_latency_seconds_count 5",
        "# TYPE gridd_frames_received_total counter",
        "gridd_frames_received_total{type=\"hello\"} 2",
        "gridd_frames_received_total{type=\"heartbeat\"} 1",
        "gridd_frames_received_total{type=\"ok\"} 0",
        "gridd_frames_sent_total{type=\"error\"} 1",
        "gridd_sent_bytes_total 20",
        "gridd_received_bytes_total 1234",
        "gridd_errors_total{kind=\"bad_token\"} 1",
        "gridd_errors_total{kind=\"bad_frame\"} 0",
        "gridd_errors_total{kind=\"permission\"} 0",
        "gridd_connections_refused_total{reason=\"max_pending\"} 7",
        "gridd_connections_refused_total{reason=\"hello_timeout\"} 0",
        "gridd_metrics_responses_total{code=\"404\"} 2",
        "gridd_metrics_responses_total{code=\"200\"} 0",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(has_line(text, want[i]), "line: %s", want[i]);
    CHECK(!strstr(text, "type=\"version\""), "the Envelope's version field is no message type");
    CHECK(!strstr(text, "kind=\"unspecified\""), "no error kind for code 0");
    check_structure(text);
    free(text);

    CHECK(strcmp(metrics_message_name(HGRID__ENVELOPE__MSG_MINT_REQUEST), "mint_request") == 0,
          "message name");
    CHECK(strcmp(metrics_message_name(1), "?") == 0, "the version field has no message name");
    CHECK(strcmp(metrics_message_name(63), "?") == 0, "unknown message type");
    return check_summary("test_daemon_metrics");
}
