// hgrid-worker's training flags and the loop's pure decisions.
#include "worker/run_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

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

static int whole(const char *flag, const char *s, int *out, char *err, size_t len)
{
    double v;
    if (number(flag, s, 1, 1e9, &v, err, len))
        return -1;
    if (v != (int)v) {
        snprintf(err, len, "%s needs a whole number, got '%s'", flag, s);
        return -1;
    }
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
    static const char *const with_value[] = {"--config", "--steps", "--seed", "--lr", "--save",
                                             "--save-interval", "--load"};
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
        if (whole(f, v, &o->steps, err, errlen))
            return -1;
    } else if (!strcmp(f, "--seed")) {
        if (number(f, v, 0, 9e15, &x, err, errlen))
            return -1;
        o->seed = (uint64_t)x;
    } else if (!strcmp(f, "--lr")) {
        if (number(f, v, 1e-12, 10, &x, err, errlen))
            return -1;
        o->lr = (float)x;
    } else if (!strcmp(f, "--save-interval")) {
        if (whole(f, v, &o->save_interval, err, errlen))
            return -1;
    } else if (!*v) {
        snprintf(err, errlen, "%s needs a directory", f);
        return -1;
    } else if (!strcmp(f, "--save")) {
        o->save_dir = v;
    } else {
        o->load_dir = v;
    }
    return 1;
}

int train_options_check(const train_options *o, bool dry_run, bool self_test, char *err,
                        size_t errlen)
{
    bool training = o->config || o->fp32 || o->profile_comm || o->dp_overlap || o->lr > 0 ||
                    o->save_dir || o->load_dir || o->save_interval;
    if (!training && (!o->steps || dry_run))
        return 0; // a dry run counts --steps without training
    const char *why = NULL;
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
