// Checkpoint files. Shard: an 8-byte magic, rank, AdamW steps and element
// count (int32, int32, int64), then params, first and second moments
// (fp32, count each; a colocated rank's encoder part, then its LLM part,
// in each). Manifest: text lines "key value".
#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/worker_impl.h"

static const char shard_magic[8] = "HGSHARD1";
#define MANIFEST_MAGIC "hgrid-checkpoint 1"

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_START 0xcbf29ce484222325ull

// The layout and model lines: a checkpoint loads only where both match.
// The first encoder's grid stands where the one encoder's did; several
// encoders and the colocated layout add words (older lines stay as they were).
static void layout_line(const hg_plan *p, char *out, size_t len)
{
    const hg_layout_spec *s = &p->spec;
    const hg_module_grid *enc = hg_plan_module(p, HG_MODULE_ENCODER);
    int at = snprintf(out, len,
                      "encoder_tp=%d encoder_dp=%d llm_tp=%d llm_cp=%d llm_pp=%d llm_dp=%d "
                      "llm_ep=%d llm_expt_tp=%d llm_only=%d micro_batch_size=%d "
                      "global_batch_size=%d",
                      enc ? enc->dense[HG_DIM_TP] : 0, enc ? enc->dense[HG_DIM_DP] : 0, s->llm_tp,
                      s->llm_cp, s->llm_pp, s->llm_dp, s->llm_ep, s->llm_expt_tp, s->llm_only,
                      s->micro_batch_size, s->global_batch_size);
    for (int i = 1; i < p->num_encoders && at > 0 && (size_t)at < len; i++)
        at += snprintf(out + at, len - at, " encoder=%s:tp=%d,dp=%d", p->modules[i].name,
                       p->modules[i].dense[HG_DIM_TP], p->modules[i].dense[HG_DIM_DP]);
    if (p->colocated && at > 0 && (size_t)at < len)
        snprintf(out + at, len - at, " mimo_layout=colocated");
}

static void model_line(const hg_model_config *m, char *out, size_t len)
{
    snprintf(out, len,
             "layers=%d hidden=%d heads=%d ffn=%d vocab=%d seq=%d experts=%d topk=%d "
             "encoder_layers=%d encoder_hidden=%d encoder_heads=%d image=%d patch=%d",
             m->num_layers, m->hidden_size, m->num_attention_heads, m->ffn_hidden_size,
             m->vocab_size, m->seq_length, m->num_experts, m->moe_router_topk,
             m->encoder_num_layers, m->encoder_hidden_size, m->encoder_num_attention_heads,
             m->image_size, m->patch_size);
}

static int fail(char *err, size_t len, const char *what, const char *path)
{
    snprintf(err, len, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

// Writes the pieces to dir/name through dir/.name.tmp, durably.
static int write_atomic(const char *dir, const char *name, const void *const *pieces,
                        const size_t *sizes, int n, char *err, size_t len)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(err, len, "cannot create", tmp);
    for (int i = 0; i < n; i++) {
        const char *p = pieces[i];
        for (size_t done = 0; done < sizes[i];) {
            ssize_t k = write(fd, p + done, sizes[i] - done);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                close(fd);
                return fail(err, len, "cannot write", tmp);
            }
            done += (size_t)k;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return fail(err, len, "cannot flush", tmp);
    if (rename(tmp, path) != 0)
        return fail(err, len, "cannot rename into", path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        if (dfd >= 0)
            close(dfd);
        return fail(err, len, "cannot flush directory", dir);
    }
    close(dfd);
    return 0;
}

// Elements of the rank's shard: both parts' on a colocated rank.
static size_t shard_count(const tr_worker *w)
{
    return w->shard.local.total + (w->colo ? w->colo->shard.local.total : 0);
}

// The parts' params, m and v to (or, load, from) host, each (count) as the
// shard file holds them.
static void move_state(tr_worker *w, float *host, size_t count, int load)
{
    size_t at = 0;
    for (tr_worker *part = w; part; part = part == w ? w->colo : NULL) {
        float *dev[3] = {part->params, part->m, part->v};
        size_t bytes = sizeof(float) * part->shard.local.total;
        for (int i = 0; i < 3; i++) {
            if (load)
                part->ops->upload(dev[i], host + i * count + at, bytes);
            else
                part->ops->download(host + i * count + at, dev[i], bytes);
        }
        at += part->shard.local.total;
        if (load) {
            part->adam_steps = w->adam_steps;
            tr_refresh_work(part);
        }
    }
}

static void shard_name(int rank, char *out, size_t len) { snprintf(out, len, "rank-%05d.bin", rank); }

// Every rank's checksum on every rank of this one's module, then across
// modules through the lane-0 bridge leaders (module rank 0 of each).
// Doubles as the barrier before the manifest: a rank contributes only once
// its shard is durable.
static void gather_checksums(tr_worker *w, uint64_t mine, int *sums /* (2 world) */)
{
    const tr_ops *o = w->ops;
    const hg_module_grid *g = w->grid;
    size_t world = (size_t)w->plan.world_size, bytes = sizeof(int) * 2 * world;
    int *dev = o->alloc(2 * bytes + sizeof(int) * 2); // (2 world), scratch, this rank's word
    if (!dev) {
        fprintf(stderr, "rank %d: out of memory for checkpoint checksums\n", w->rank);
        abort();
    }
    o->zero(dev, bytes);
    o->upload(dev + 4 * world, &mine, sizeof mine);
    tr_all_gather(w->g[HG_GROUP_MODULE], dev + 4 * world, dev + 2 * (size_t)g->rank_offset, 2,
                  TR_I32);
    tr_across_modules(w, dev, dev + 2 * world, 2 * world, TR_I32);
    o->download(sums, dev, bytes);
    o->release(dev);
}

// Writes w's shard durably; its checksum into *sum. 0, or -1 with err.
static int write_shard(tr_worker *w, const char *dir, uint64_t *sum, char *err, size_t errlen)
{
    size_t count = shard_count(w), bytes = sizeof(float) * count;
    int32_t head_ints[2] = {w->rank, w->adam_steps};
    int64_t n64 = (int64_t)count;
    float *state = malloc(3 * bytes + 1); // params, m, v on the host
    char name[64];
    if (!state) {
        snprintf(err, errlen, "rank %d: out of memory for the shard's host copy", w->rank);
        return -1;
    }
    move_state(w, state, count, 0);
    const void *pieces[] = {shard_magic, head_ints, &n64, state, state + count, state + 2 * count};
    size_t sizes[] = {sizeof shard_magic, sizeof head_ints, sizeof n64, bytes, bytes, bytes};
    *sum = FNV_START;
    for (int i = 0; i < 6; i++)
        *sum = fnv1a(*sum, pieces[i], sizes[i]);
    shard_name(w->rank, name, sizeof name);
    int rc = write_atomic(dir, name, pieces, sizes, 6, err, errlen);
    free(state);
    return rc;
}

// The manifest naming every rank's shard and checksum (sums: (2 world)
// ints, a checksum's two words per rank; 0: that rank failed).
static int write_manifest(const hg_plan *plan, const char *dir, int step, int generation,
                          const int *sums, char *err, size_t errlen)
{
    size_t cap = 1024 + 64 * (size_t)plan->world_size, at = 0;
    char *text = malloc(cap), layout[512], model[512], name[64];
    int rc = 0;
    if (!text) {
        snprintf(err, errlen, "out of memory for the manifest");
        return -1;
    }
    layout_line(plan, layout, sizeof layout);
    model_line(&plan->spec.model, model, sizeof model);
    at += snprintf(text + at, cap - at, "%s\nlayout %s\nmodel %s\nstep %d\ngeneration %d\n"
                   "world %d\n", MANIFEST_MAGIC, layout, model, step, generation,
                   plan->world_size);
    for (int r = 0; r < plan->world_size && rc == 0; r++) {
        uint64_t s;
        memcpy(&s, sums + 2 * r, sizeof s);
        if (s == 0) {
            snprintf(err, errlen, "rank %d could not write its shard; no manifest written", r);
            rc = -1;
        }
        shard_name(r, name, sizeof name);
        at += snprintf(text + at, cap - at, "shard %s %016llx\n", name, (unsigned long long)s);
    }
    if (rc == 0) {
        const void *mp[] = {text};
        size_t ms[] = {at};
        rc = write_atomic(dir, "manifest", mp, ms, 1, err, errlen);
    }
    free(text);
    return rc;
}

int tr_checkpoint_save(tr_worker *w, const char *dir, int step, int generation, char *err,
                       size_t errlen)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return fail(err, errlen, "cannot create checkpoint directory", dir);
    uint64_t sum = 0;
    int rc = write_shard(w, dir, &sum, err, errlen);
    // Ranks that failed still take part in the gather (a zero checksum),
    // so that nobody blocks; the writer refuses a manifest with holes.
    int *sums = calloc(2 * (size_t)w->plan.world_size, sizeof(int));
    if (!sums) {
        snprintf(err, errlen, "rank %d: out of memory for checksums", w->rank);
        return -1;
    }
    gather_checksums(w, rc == 0 ? sum : 0, sums);
    if (rc == 0 && w->rank == 0)
        rc = write_manifest(&w->plan, dir, step, generation, sums, err, errlen);
    free(sums);
    return rc;
}

int tr_checkpoint_save_all(tr_worker *const *workers, int n, const char *dir, int step,
                           int generation, char *err, size_t errlen)
{
    const hg_plan *plan = &workers[0]->plan;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return fail(err, errlen, "cannot create checkpoint directory", dir);
    int *sums = calloc(2 * (size_t)n, sizeof(int)), rc = sums ? 0 : -1;
    if (!sums)
        snprintf(err, errlen, "out of memory for checksums");
    for (int i = 0; i < n && rc == 0; i++) {
        uint64_t sum = 0;
        rc = write_shard(workers[i], dir, &sum, err, errlen);
        memcpy(sums + 2 * (size_t)workers[i]->rank, &sum, sizeof sum);
    }
    if (rc == 0)
        rc = write_manifest(plan, dir, step, generation, sums, err, errlen);
    free(sums);
    return rc;
}

// Reads the manifest's value for key into out; 0 or -1 if absent.
static int manifest_value(const char *text, const char *key, char *out, size_t len)
{
    size_t k = strlen(key);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > k && strncmp(line, key, k) == 0 && line[k] == ' ') {
            n -= k + 1;
            n = n < len ? n : len - 1;
            memcpy(out, line + k + 1, n);
            out[n] = 0;
            return 0;
        }
        line += n + (end != NULL);
    }
    return -1;
}

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *size = (size_t)n;
    }
    return buf;
}

// Checks the manifest against w; leaves this rank's expected checksum.
static int check_manifest(tr_worker *w, const char *dir, const char *text, uint64_t *sum,
                          int *step, int *generation, char *err, size_t len)
{
    char have[512], want[512], value[512], key[96];
    if (strncmp(text, MANIFEST_MAGIC "\n", sizeof MANIFEST_MAGIC) != 0) {
        snprintf(err, len, "%s/manifest is not an hgrid checkpoint manifest", dir);
        return -1;
    }
    layout_line(&w->plan, want, sizeof want);
    if (manifest_value(text, "layout", have, sizeof have) != 0 || strcmp(have, want) != 0) {
        snprintf(err, len, "checkpoint %s has layout [%s] but this job's layout is [%s]; resume "
                 "with the checkpoint's layout", dir, have, want);
        return -1;
    }
    model_line(&w->plan.spec.model, want, sizeof want);
    if (manifest_value(text, "model", have, sizeof have) != 0 || strcmp(have, want) != 0) {
        snprintf(err, len, "checkpoint %s has model [%s] but this job's model is [%s]; resume "
                 "with the checkpoint's model", dir, have, want);
        return -1;
    }
    char name[64];
    shard_name(w->rank, name, sizeof name);
    snprintf(key, sizeof key, "shard %s", name);
    unsigned long long s;
    if (manifest_value(text, "step", value, sizeof value) != 0 || sscanf(value, "%d", step) != 1 ||
        manifest_value(text, "generation", value, sizeof value) != 0 ||
        sscanf(value, "%d", generation) != 1 || manifest_value(text, key, value, sizeof value) != 0 ||
        sscanf(value, "%llx", &s) != 1) {
        snprintf(err, len, "%s/manifest lacks the step, generation or %s; it is damaged", dir, key);
        return -1;
    }
    *sum = s;
    return 0;
}

int tr_checkpoint_load(tr_worker *w, const char *dir, int *step, int *generation, char *err,
                       size_t errlen)
{
    char path[4096], name[64];
    size_t size;
    snprintf(path, sizeof path, "%s/manifest", dir);
    char *text = read_file(path, &size);
    if (!text)
        return fail(err, errlen, "cannot read", path);
    uint64_t want;
    int rc = check_manifest(w, dir, text, &want, step, generation, err, errlen);
    free(text);
    if (rc != 0)
        return -1;
    shard_name(w->rank, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *buf = read_file(path, &size);
    if (!buf)
        return fail(err, errlen, "cannot read", path);
    size_t count = shard_count(w), bytes = sizeof(float) * count;
    size_t head = sizeof shard_magic + 2 * sizeof(int32_t) + sizeof(int64_t);
    int32_t ints[2];
    int64_t n64 = -1;
    if (size == head + 3 * bytes) {
        memcpy(ints, buf + sizeof shard_magic, sizeof ints);
        memcpy(&n64, buf + sizeof shard_magic + sizeof ints, sizeof n64);
    }
    if (size != head + 3 * bytes || memcmp(buf, shard_magic, sizeof shard_magic) != 0 ||
        ints[0] != w->rank || n64 != (int64_t)count) {
        snprintf(err, errlen, "%s is not rank %d's shard of %zu elements", path, w->rank, count);
        free(buf);
        return -1;
    }
    if (fnv1a(FNV_START, buf, size) != want) {
        snprintf(err, errlen, "%s does not match its checksum in the manifest; it is damaged",
                 path);
        free(buf);
        return -1;
    }
    w->adam_steps = ints[1];
    float *state = malloc(3 * bytes + 1); // the file's floats, aligned
    if (!state) {
        snprintf(err, errlen, "rank %d: out of memory for the shard's host copy", w->rank);
        free(buf);
        return -1;
    }
    memcpy(state, buf + head, 3 * bytes);
    move_state(w, state, count, 1);
    free(state);
    free(buf);
    return 0;
}
