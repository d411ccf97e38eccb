// hgridctl watch's view: summaries per module, rows per rank, text and JSON.
#include "ctl/watch_view.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/ctl_jobs.h"
#include "util/json.h"
#include "wire/wire.h"

#define JOIN_BAR_WIDTH 32

static bool is_lost(const Hgrid__WorkerInfo *w) { return strcmp(w->state, "lost") == 0; }

static void classify(const hg_plan *plan, const Hgrid__WorkerInfo *w, watch_rank *r)
{
    r->info = w;
    r->rank = w->rank == UINT32_MAX ? -1 : (long long)w->rank;
    r->module = r->module2 = -1;
    r->has_loss = false;
    r->reported = w->last_heartbeat_ms >= 0;
    if (r->rank < 0 || r->rank >= plan->world_size)
        return;
    const hg_module_grid *mods[2];
    int n = hg_plan_modules_of_rank(plan, (int)r->rank, mods);
    r->module = mods[0]->index;
    r->module2 = n == 2 ? mods[1]->index : -1;
    const hg_module_grid *llm = hg_plan_module(plan, HG_MODULE_LLM);
    hg_coords c;
    hg_module_coords(llm, (int)r->rank, &c);
    r->has_loss = (mods[0] == llm || (n == 2 && mods[1] == llm)) &&
                  c.pp == llm->dense[HG_DIM_PP] - 1 && w->has_loss;
}

static void summarize(watch_view *v, int n)
{
    for (int i = 0; i < v->plan.num_modules; i++) {
        watch_module *s = &v->modules[i];
        memset(s, 0, sizeof *s);
        s->index = i;
        s->first_rank = v->plan.modules[i].rank_offset;
        s->num_ranks = v->plan.modules[i].num_ranks;
    }
    for (int k = 0; k < n; k++) {
        const watch_rank *r = &v->ranks[k];
        if (r->module < 0 || !r->reported || is_lost(r->info))
            continue;
        // A colocated rank counts in both its modules.
        for (int in = 0; in < 2; in++) {
            int mi = in == 0 ? r->module : r->module2;
            if (mi < 0)
                continue;
            watch_module *s = &v->modules[mi];
            const Hgrid__WorkerInfo *w = r->info;
            if (s->reporting == 0 || w->throughput < s->tokens_per_s)
                s->tokens_per_s = w->throughput;
            s->reporting++;
            if (w->step > s->step)
                s->step = w->step;
            if (w->step_time_s > s->step_time_s)
                s->step_time_s = w->step_time_s;
            if (r->has_loss && v->plan.modules[mi].id == HG_MODULE_LLM) {
                s->loss += w->loss;
                s->loss_ranks++;
            }
        }
    }
    for (int i = 0; i < v->plan.num_modules; i++)
        if (v->modules[i].loss_ranks)
            v->modules[i].loss /= v->modules[i].loss_ranks;
}

int watch_view_build(const Hgrid__JobInfo *info, watch_view *v, char *err, size_t errlen)
{
    hg_layout_spec spec;
    char why[HG_ERR_LEN];
    memset(v, 0, sizeof *v);
    v->info = info;
    hg_layout_spec_defaults(&spec);
    if (wire_layout_to_spec(info->layout, &spec, why, sizeof why) ||
        hg_plan_build(&spec, &v->plan, why, sizeof why)) {
        snprintf(err, errlen, "gridd sent a layout this hgridctl cannot plan: %s "
                              "(mismatched hgrid builds?)", why);
        return -1;
    }
    v->ranks = calloc(info->n_workers + 1, sizeof *v->ranks);
    if (!v->ranks) {
        snprintf(err, errlen, "out of memory for %zu workers", info->n_workers);
        return -1;
    }
    for (size_t k = 0; k < info->n_workers; k++)
        classify(&v->plan, info->workers[k], &v->ranks[k]);
    summarize(v, (int)info->n_workers);
    // A page of a larger job: gridd's progress covers every rank.
    for (size_t i = 0; info->next_slot && i < info->n_modules && i < (size_t)v->plan.num_modules;
         i++) {
        const Hgrid__ModuleProgress *m = info->modules[i];
        watch_module *s = &v->modules[i];
        s->step = m->step;
        s->tokens_per_s = m->tokens_per_s;
        s->loss = m->has_loss ? m->loss : s->loss;
        s->loss_ranks = m->has_loss && !s->loss_ranks ? 1 : s->loss_ranks;
    }
    return 0;
}

void watch_view_free(watch_view *v)
{
    free(v->ranks);
    v->ranks = NULL;
}

// ---- text

static const char *module_name(const watch_view *v, int index)
{
    return index < 0 ? "-" : v->plan.modules[index].name;
}

static void format_seconds(char *buf, size_t len, double s)
{
    if (s <= 0)
        snprintf(buf, len, "-");
    else if (s * 1e3 < 999.95) // what "%.1f ms" prints below 1000
        snprintf(buf, len, "%.1f ms", s * 1e3);
    else
        snprintf(buf, len, "%.2f s", s);
}

static void format_rank_range(char *buf, size_t len, int first, int n)
{
    if (n == 1)
        snprintf(buf, len, "%d", first);
    else
        snprintf(buf, len, "%d-%d", first, first + n - 1);
}

static void text_modules(const watch_view *v, FILE *out, const char *eol)
{
    fprintf(out, "%-8s %-11s %9s %8s %9s %11s %10s%s", "module", "ranks", "reporting", "step",
            "loss", "tokens/s", "step time", eol);
    for (int i = 0; i < v->plan.num_modules; i++) {
        const watch_module *s = &v->modules[i];
        char ranks[32], reporting[32], step[24] = "-", loss[24] = "-", tok[24] = "-", st[24];
        format_rank_range(ranks, sizeof ranks, s->first_rank, s->num_ranks);
        snprintf(reporting, sizeof reporting, "%d/%d", s->reporting, s->num_ranks);
        if (s->reporting) {
            snprintf(step, sizeof step, "%llu", (unsigned long long)s->step);
            snprintf(tok, sizeof tok, "%.0f", s->tokens_per_s);
        }
        if (s->loss_ranks)
            snprintf(loss, sizeof loss, "%.4f", s->loss);
        format_seconds(st, sizeof st, s->step_time_s);
        fprintf(out, "%-8s %-11s %9s %8s %9s %11s %10s%s", module_name(v, s->index), ranks, reporting,
                step, loss, tok, st, eol);
    }
}

// gridd's recent losses of a module (by its kind), oldest first; NULL when none.
static const Hgrid__ModuleProgress *progress_of(const Hgrid__JobInfo *info, hg_module_id id)
{
    Hgrid__Module want = id == HG_MODULE_LLM ? HGRID__MODULE__MODULE_LLM
                                             : HGRID__MODULE__MODULE_ENCODER;
    for (size_t i = 0; i < info->n_modules; i++)
        if (info->modules[i]->module == want && info->modules[i]->n_recent_loss > 0)
            return info->modules[i];
    return NULL;
}

int watch_view_sparkline_lines(const watch_view *v)
{
    int n = 0;
    for (int i = 0; v->sparklines && i < v->plan.num_modules; i++)
        n += progress_of(v->info, v->plan.modules[i].id) != NULL;
    return n;
}

// Per module with a loss: its recent losses as a sparkline, scaled from
// their lowest to their highest, then the first and last of them.
static void text_sparklines(const watch_view *v, FILE *out, const char *eol)
{
    static const char *const bars[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                       "\u2585", "\u2586", "\u2587", "\u2588"};
    for (int i = 0; i < v->plan.num_modules; i++) {
        const Hgrid__ModuleProgress *p = progress_of(v->info, v->plan.modules[i].id);
        if (!p)
            continue;
        float lo = p->recent_loss[0], hi = lo;
        for (size_t k = 1; k < p->n_recent_loss; k++) {
            lo = p->recent_loss[k] < lo ? p->recent_loss[k] : lo;
            hi = p->recent_loss[k] > hi ? p->recent_loss[k] : hi;
        }
        fprintf(out, "%-8s loss ", module_name(v, i));
        for (size_t k = 0; k < p->n_recent_loss; k++) {
            int b = hi > lo ? (int)((p->recent_loss[k] - lo) / (hi - lo) * 7.0f + 0.5f) : 0;
            fputs(bars[b < 0 ? 0 : b > 7 ? 7 : b], out);
        }
        fprintf(out, " %.4f .. %.4f (last %zu reports)%s", (double)p->recent_loss[0],
                (double)p->recent_loss[p->n_recent_loss - 1], p->n_recent_loss, eol);
    }
}

static void text_rank(const watch_view *v, const watch_rank *r, FILE *out, int host_width,
                      const char *eol)
{
    char module[2 * HG_NAME_LEN];
    if (r->module2 >= 0)
        snprintf(module, sizeof module, "%s+%s", module_name(v, r->module),
                 module_name(v, r->module2));
    else
        snprintf(module, sizeof module, "%s", module_name(v, r->module));
    const Hgrid__WorkerInfo *w = r->info;
    char rank[24] = "-", where[320], step[24] = "-", loss[24] = "-", tok[24] = "-", st[24] = "-",
         age[24] = "never";
    if (r->rank >= 0)
        snprintf(rank, sizeof rank, "%lld", r->rank);
    snprintf(where, sizeof where, "%s/%u", w->host, w->device);
    if (r->reported) {
        snprintf(step, sizeof step, "%llu", (unsigned long long)w->step);
        snprintf(tok, sizeof tok, "%.0f", (double)w->throughput);
        format_seconds(st, sizeof st, w->step_time_s);
        snprintf(age, sizeof age, "%.1f s", (double)w->last_heartbeat_ms / 1e3);
        if (r->has_loss)
            snprintf(loss, sizeof loss, "%.4f", (double)w->loss);
    }
    fprintf(out, "%6s  %-8s %-*s %-8s %8s %9s %11s %10s %9s%s", rank, module,
            host_width, where, w->state, step, loss, tok, st, age, eol);
}

// While workers join: a bar of joined/world and how many are still missing.
static void text_joining(const Hgrid__JobInfo *info, FILE *out, const char *eol)
{
    char bar[JOIN_BAR_WIDTH + 1];
    int full = info->world_size ? (int)((uint64_t)info->joined * JOIN_BAR_WIDTH / info->world_size)
                                : 0;
    for (int i = 0; i < JOIN_BAR_WIDTH; i++)
        bar[i] = i < full ? '#' : '.';
    bar[JOIN_BAR_WIDTH] = '\0';
    unsigned missing = info->world_size - info->joined;
    fprintf(out, "joining [%s] %u/%u, waiting for %u more worker%s%s", bar, info->joined,
            info->world_size, missing, missing == 1 ? "" : "s", eol);
}

void watch_view_text(const watch_view *v, FILE *out, int max_rows, const char *eol)
{
    const Hgrid__JobInfo *info = v->info;
    fprintf(out, "job %s: %s, generation %llu, joined %u/%u%s", info->job, info->state,
            (unsigned long long)info->generation, info->joined, info->world_size, eol);
    if (info->joined < info->world_size && !info->ended_unix_ms)
        text_joining(info, out, eol);
    if (info->ended_unix_ms) {
        char end[320];
        ctl_format_end(info, end, sizeof end);
        fprintf(out, "%s%s", end, eol);
    }
    fprintf(out, "%s", eol);
    text_modules(v, out, eol);
    if (v->sparklines)
        text_sparklines(v, out, eol);
    fprintf(out, "%s", eol);
    int host_width = (int)strlen("host/device");
    for (size_t k = 0; k < info->n_workers; k++) {
        int n = snprintf(NULL, 0, "%s/%u", info->workers[k]->host, info->workers[k]->device);
        if (n > host_width)
            host_width = n < 40 ? n : 40;
    }
    fprintf(out, "%6s  %-8s %-*s %-8s %8s %9s %11s %10s %9s%s", "rank", "module", host_width,
            "host/device", "state", "step", "loss", "tokens/s", "step time", "heartbeat", eol);
    size_t rows = info->n_workers;
    if (max_rows >= 0 && rows > (size_t)max_rows)
        rows = (size_t)max_rows;
    for (size_t k = 0; k < rows; k++)
        text_rank(v, &v->ranks[k], out, host_width, eol);
    size_t total = ctl_num_workers(info); // gridd sends a page of them
    if (rows < total)
        fprintf(out, "  ... %zu more ranks (all of them: hgridctl %s %s %s)%s", total - rows,
                rows < info->n_workers ? "watch" : "status", info->job,
                rows < info->n_workers ? "--once" : "--all", eol);
}

// ---- JSON

// A number, or null when there is none (no heartbeat, no loss on this rank).
static void json_maybe(json_writer *w, bool have, double x)
{
    if (have)
        json_double(w, x);
    else
        json_null(w);
}

static void json_maybe_int(json_writer *w, bool have, long long x)
{
    if (have)
        json_int(w, x);
    else
        json_null(w);
}

static void json_modules(const watch_view *v, json_writer *w)
{
    json_begin_array(w);
    for (int i = 0; i < v->plan.num_modules; i++) {
        const watch_module *s = &v->modules[i];
        json_begin_object(w);
        json_key(w, "module");
        json_string(w, module_name(v, s->index));
        json_key(w, "first_rank");
        json_int(w, s->first_rank);
        json_key(w, "num_ranks");
        json_int(w, s->num_ranks);
        json_key(w, "reporting");
        json_int(w, s->reporting);
        json_key(w, "step");
        json_maybe_int(w, s->reporting, (long long)s->step);
        json_key(w, "loss");
        json_maybe(w, s->loss_ranks, s->loss);
        json_key(w, "loss_ranks");
        json_int(w, s->loss_ranks);
        json_key(w, "tokens_per_s");
        json_maybe(w, s->reporting, s->tokens_per_s);
        json_key(w, "step_time_s");
        json_maybe(w, s->reporting, s->step_time_s);
        json_end_object(w);
    }
    json_end_array(w);
}

static void json_rank(const watch_view *v, const watch_rank *r, json_writer *w)
{
    const Hgrid__WorkerInfo *wi = r->info;
    json_begin_object(w);
    json_key(w, "rank");
    json_int(w, r->rank);
    json_key(w, "module");
    if (r->module < 0)
        json_null(w);
    else
        json_string(w, module_name(v, r->module));
    if (r->module2 >= 0) { // colocated: every module the rank is in
        json_key(w, "modules");
        json_begin_array(w);
        json_string(w, module_name(v, r->module));
        json_string(w, module_name(v, r->module2));
        json_end_array(w);
    }
    json_key(w, "host");
    json_string(w, wi->host);
    json_key(w, "device");
    json_int(w, wi->device);
    json_key(w, "state");
    json_string(w, wi->state);
    json_key(w, "step");
    json_maybe_int(w, r->reported, (long long)wi->step);
    json_key(w, "loss");
    json_maybe(w, r->reported && r->has_loss, wi->loss);
    json_key(w, "tokens_per_s");
    json_maybe(w, r->reported, wi->throughput);
    json_key(w, "step_time_s");
    json_maybe(w, r->reported, wi->step_time_s);
    json_key(w, "last_heartbeat_ms");
    json_maybe_int(w, r->reported, wi->last_heartbeat_ms);
    json_key(w, "self_test");
    json_begin_array(w);
    for (size_t k = 0; k < wi->n_checks; k++) {
        json_begin_object(w);
        json_key(w, "name");
        json_string(w, wi->checks[k]->name);
        json_key(w, "ok");
        json_bool(w, wi->checks[k]->ok);
        json_key(w, "busbw_gbps");
        json_double(w, wi->checks[k]->busbw_gbps);
        json_key(w, "detail");
        json_string(w, wi->checks[k]->detail);
        json_end_object(w);
    }
    json_end_array(w);
    json_end_object(w);
}

void watch_view_json(const watch_view *v, FILE *out)
{
    const Hgrid__JobInfo *info = v->info;
    json_writer w;
    json_init(&w, out);
    json_begin_object(&w);
    ctl_json_job_head(&w, info);
    json_key(&w, "joined");
    json_int(&w, info->joined);
    ctl_json_job_end(&w, info);
    json_key(&w, "modules");
    json_modules(v, &w);
    json_key(&w, "workers");
    json_begin_array(&w);
    for (size_t k = 0; k < info->n_workers; k++)
        json_rank(v, &v->ranks[k], &w);
    json_end_array(&w);
    json_end_object(&w);
    fputc('\n', out);
}
