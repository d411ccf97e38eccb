// hgrid-worker's training flags and the loop's pure decisions.
#include "worker/run_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "train/shard.h"
#include "train/train.h"

void train_options_defaults(train_options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
}

static int number(const char *flag, const char *s, double lo, double hi, double *out, char *err,
                  size_t len)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > hi) {
        snprintf(err, len, "%s needs a number in [%g, %g], got '%s'", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

// A whole number in [lo, hi].
static int whole(const char *flag, const char *s, double lo, double hi, double *out, char *err,
                 size_t len)
{
    if (number(flag, s, lo, hi, out, err, len))
        return -1;
    if (*out != (double)(uint64_t)*out) {
        snprintf(err, len, "%s needs a whole number, got '%s'", flag, s);
        return -1;
    }
    return 0;
}

static int count(const char *flag, const char *s, int *out, char *err, size_t len)
{
    double v;
    if (whole(flag, s, 1, 1e9, &v, err, len))
        return -1;
    *out = (int)v;
    return 0;
}

int train_parse_flag(train_options *o, int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *f = argv[*i];
    if (!strcmp(f, "--fp32")) {
        o->fp32 = true;
        return 1;
    }
    if (!strcmp(f, "--profile-comm")) {
        o->profile_comm = true;
        return 1;
    }
    if (!strcmp(f, "--dp-overlap")) {
        o->dp_overlap = true;
        return 1;
    }
    bool *flag = !strcmp(f, "--single-gpu") ? &o->single_gpu
                 : !strcmp(f, "--cpu")      ? &o->cpu
                 : !strcmp(f, "--describe") ? &o->describe
                                            : NULL;
    if (flag) {
        *flag = true;
        return 1;
    }
    static const char *const with_value[] = {"--config", "--steps", "--seed", "--lr", "--save",
                                             "--save-interval", "--load", "--batch", "--dump",
                                             "--encoders"};
    size_t k = 0, n = sizeof with_value / sizeof with_value[0];
    while (k < n && strcmp(f, with_value[k]))
        k++;
    if (k == n)
        return 0;
    if (*i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", f);
        return -1;
    }
    const char *v = argv[++*i];
    double x;
    if (!strcmp(f, "--config")) {
        if (strcmp(v, TRAIN_CONFIG_JOB) != 0 && !hg_config_find(v)) {
            snprintf(err, errlen, "--config: no config '%s'; use one of: %s %s", v,
                     TRAIN_CONFIG_JOB, hg_config_names);
            return -1;
        }
        o->config = v;
    } else if (!strcmp(f, "--steps")) {
        if (count(f, v, &o->steps, err, errlen))
            return -1;
    } else if (!strcmp(f, "--batch")) {
        if (count(f, v, &o->batch, err, errlen))
            return -1;
    } else if (!strcmp(f, "--encoders")) {
        if (whole(f, v, 1, HG_MAX_ENCODERS, &x, err, errlen))
            return -1;
        o->encoders = (int)x;
    } else if (!strcmp(f, "--seed")) {
        if (whole(f, v, 0, 9e15, &x, err, errlen))
            return -1;
        o->seed = (uint64_t)x;
    } else if (!strcmp(f, "--lr")) {
        if (number(f, v, 1e-12, 10, &x, err, errlen))
            return -1;
        o->lr = (float)x;
    } else if (!strcmp(f, "--save-interval")) {
        if (count(f, v, &o->save_interval, err, errlen))
            return -1;
    } else if (!*v) {
        snprintf(err, errlen, "%s needs a %s", f, strcmp(f, "--dump") ? "directory" : "file");
        return -1;
    } else if (!strcmp(f, "--dump")) {
        o->dump = v;
    } else if (!strcmp(f, "--save")) {
        o->save_dir = v;
    } else {
        o->load_dir = v;
    }
    return 1;
}

// --single-gpu's rules: a named config, no gridd, no collectives to time or
// overlap; checkpoints only while training on fresh samples.
static const char *single_gpu_check(const train_options *o, bool dry_run, bool self_test)
{
    if (!o->config || (!o->steps && !o->describe))
        return "--single-gpu needs --config NAME and --steps N";
    if (!strcmp(o->config, TRAIN_CONFIG_JOB))
        return "--single-gpu trains a named config (no job): tiny, tiny-moe, small, small-moe or 1b";
    if (o->cpu && !o->dump)
        return "--cpu only takes a --dump; training runs on the GPU";
    if (dry_run || self_test)
        return "--single-gpu trains without gridd; drop --dry-run and --self-test";
    if (o->profile_comm || o->dp_overlap)
        return "--profile-comm and --dp-overlap time and overlap collectives; --single-gpu has "
               "none";
    if (o->dump && (o->save_dir || o->load_dir))
        return "--dump trains on one batch; it takes no --save or --load";
    if (o->dump && o->encoders > 1)
        return "--dump writes one encoder's state for the PyTorch check; drop --encoders";
    if (o->save_interval && !o->save_dir)
        return "--save-interval needs --save DIR";
    return NULL;
}

int train_options_check(const train_options *o, bool dry_run, bool self_test, char *err,
                        size_t errlen)
{
    const char *why = NULL;
    if (o->single_gpu)
        why = single_gpu_check(o, dry_run, self_test);
    else if (o->batch || o->encoders || o->dump || o->cpu || o->describe)
        why = "--batch, --encoders, --dump, --cpu and --describe go with --single-gpu (a "
              "worker trains the job's encoders)";
    if (why || o->single_gpu) {
        if (why)
            snprintf(err, errlen, "%s", why);
        return why ? -1 : 0;
    }
    bool training = o->config || o->fp32 || o->profile_comm || o->dp_overlap || o->lr > 0 ||
                    o->save_dir || o->load_dir || o->save_interval;
    if (!training && (!o->steps || dry_run))
        return 0; // a dry run counts --steps without training
    if (!o->config || !o->steps)
        why = "training needs both --config NAME and --steps N";
    else if (o->save_interval && !o->save_dir)
        why = "--save-interval needs --save DIR";
    else if (dry_run)
        why = "training needs a GPU; drop --dry-run";
    else if (self_test)
        why = "--self-test exits before training; drop it or the training flags";
    if (why)
        snprintf(err, errlen, "%s", why);
    return why ? -1 : 0;
}

int train_check_job(const train_options *o, const hg_plan *job, int rank, char *err,
                    size_t errlen)
{
    if (!o->config)
        return 0;
    // The trainer's own split rules, in every module holding the rank (a
    // colocated rank trains both), before any communicator forms.
    hg_plan trained = *job;
    tr_plan_as_trained(&trained);
    const hg_module_grid *mine_modules[2];
    int n = hg_plan_modules_of_rank(&trained, rank, mine_modules);
    for (int i = 0; i < n; i++) {
        tr_shard shard;
        if (tr_shard_build(&shard, &trained, mine_modules[i], rank, err, errlen) != 0)
            return -1;
    }
    if (strcmp(o->config, TRAIN_CONFIG_JOB) == 0)
        return 0;
    int mine, theirs;
    const char *flag = hg_model_config_differs(&hg_config_find(o->config)->model,
                                               &job->spec.model, &mine, &theirs);
    if (!flag)
        return 0;
    char name[64];
    snprintf(name, sizeof name, "--%s", flag);
    snprintf(err, errlen,
             "--config %s has %s %d but the job was submitted with %d; the worker trains the "
             "job's model: use --config job, or submit the job with config %s's shape",
             o->config, name, mine, theirs, o->config);
    return -1;
}

bool train_should_save(const train_options *o, int done)
{
    if (!o->save_dir || done <= 0)
        return false;
    return done == o->steps || (o->save_interval > 0 && done % o->save_interval == 0);
}

double train_tokens_per_step(const hg_plan *plan)
{
    return (double)plan->spec.global_batch_size * plan->spec.model.seq_length;
}
