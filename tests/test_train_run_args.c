// hgrid-worker's training flags (parsed values, one-line refusals) and the
// training loop's decisions: when it saves, what a step's tokens are.
#include <string.h>

#include "model/config.h"
#include "tests/check.h"
#include "train/train.h"
#include "worker/run_args.h"

// Parses argv (NULL-terminated, argv[0] a program name) as the worker does:
// training flags consumed, anything else an error. 0, or -1 with err.
static int parse(train_options *o, char **argv, bool dry_run, bool self_test, char *err,
                 size_t len)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    train_options_defaults(o);
    err[0] = 0;
    for (int i = 1; i < argc; i++) {
        int used = train_parse_flag(o, argc, argv, &i, err, len);
        if (used <= 0) {
            if (!used)
                strcpy(err, "not a training flag");
            return -1;
        }
    }
    return train_options_check(o, dry_run, self_test, err, len);
}

static void expect_error(char **argv, bool dry_run, bool self_test, const char *want)
{
    train_options o;
    char err[256];
    int rc = parse(&o, argv, dry_run, self_test, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want) && !strchr(err, '\n'), "%s %s: got rc %d '%s', want '%s'",
          argv[1], argv[2] ? argv[2] : "", rc, err, want);
}

// The worker trains the job's model: a --config naming another shape is
// refused at assignment, never substituted.
static void test_check_job(void)
{
    train_options to;
    char err[512];
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec); // the job: layout defaults = config small's shape
    hg_plan job_plan;
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "default layout: %s", err);
    train_options_defaults(&to);
    to.config = "small";
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == 0, "--config small on small: %s", err);
    to.config = TRAIN_CONFIG_JOB;
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == 0, "--config job: %s", err);
    to.config = "tiny";
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == -1 &&
              strstr(err, "--config tiny has --num-layers 2 but the job was submitted with 12") &&
              !strchr(err, '\n'),
          "--config tiny on a small job: '%s'", err);
    spec.model = hg_config_find("tiny")->model;
    spec.model.num_experts = 8;
    spec.model.moe_router_topk = 2;
    spec.llm_ep = 2;
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "tiny with experts: %s", err);
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == -1 && strstr(err, "--num-experts 0"),
          "--config tiny on tiny with 8 experts: '%s'", err);
    to.config = "tiny-moe";
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == 0, "--config tiny-moe: %s", err);
    // Colocated and several-encoder jobs train; a colocated rank's split
    // rules are checked in both of its modules (the LLM's vocabulary on
    // rank 0, whose first module is the encoder).
    hg_layout_spec_defaults(&spec);
    spec.colocated = true;
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "colocated: %s", err);
    to.config = TRAIN_CONFIG_JOB;
    for (int r = 0; r < job_plan.world_size; r++)
        CHECK(train_check_job(&to, &job_plan, r, err, sizeof err) == 0, "colocated rank %d: %s",
              r, err);
    // A vocabulary tp does not divide trains padded, as Megatron's (32001 -> 32256).
    spec.model.vocab_size = 32001;
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "colocated vocab 32001: %s", err);
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == 0,
          "colocated vocab 32001 on llm tp 2, rank 0: '%s'", err);
    hg_plan trained = job_plan;
    tr_plan_as_trained(&trained);
    CHECK(trained.spec.model.vocab_size == 32256 && job_plan.spec.model.vocab_size == 32001,
          "trained vocabulary %d of the job's %d, want 32256 of 32001",
          trained.spec.model.vocab_size, job_plan.spec.model.vocab_size);
    hg_layout_spec_defaults(&spec);
    spec.num_encoders = 2;
    spec.encoders[0] = (hg_encoder_spec){"vision", 2, 2};
    spec.encoders[1] = (hg_encoder_spec){"audio", 1, 1};
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "two encoders: %s", err);
    for (int r = 0; r < job_plan.world_size; r++)
        CHECK(train_check_job(&to, &job_plan, r, err, sizeof err) == 0, "two encoders rank %d: %s",
              r, err);
    // Every rank of a job gridd takes passes the trainer's split rules:
    // 32000 on tp 3 (Megatron's 32256), on each rank.
    hg_layout_spec_defaults(&spec);
    spec.encoder_dp = 1, spec.llm_tp = 3, spec.llm_dp = 1;
    CHECK(hg_plan_build(&spec, &job_plan, err, sizeof err) == 0, "vocab 32000 on tp 3: %s", err);
    CHECK(job_plan.padded_vocab_size == 32256, "32000 on tp 3 padded to %d, want 32256",
          job_plan.padded_vocab_size);
    for (int r = 0; r < job_plan.world_size; r++)
        CHECK(train_check_job(&to, &job_plan, r, err, sizeof err) == 0, "vocab 32000 on tp 3, "
              "rank %d: %s", r, err);
    // The split rule itself still holds for a plan that was never padded.
    job_plan.padded_vocab_size = 0;
    CHECK(train_check_job(&to, &job_plan, 3, err, sizeof err) == -1 && strstr(err, "vocab size"),
          "unpadded vocab 32000 on llm tp 3: '%s'", err);
    to.config = NULL; // no training: nothing to refuse
    CHECK(train_check_job(&to, &job_plan, 0, err, sizeof err) == 0, "no training: %s", err);
}

int main(void)
{
    train_options o;
    char err[256];
    char *full[] = {"w", "--config", "tiny", "--steps", "20", "--fp32", "--seed", "5", "--lr",
                    "0.003", "--save", "/tmp/ck", "--save-interval", "5", "--load", "/tmp/old",
                    "--profile-comm", "--dp-overlap", NULL};
    CHECK(parse(&o, full, false, false, err, sizeof err) == 0, "full flags: %s", err);
    CHECK(o.config && !strcmp(o.config, "tiny"), "config");
    CHECK_EQ(o.steps, 20);
    CHECK(o.fp32, "--fp32");
    CHECK_EQ((long long)o.seed, 5);
    CHECK(o.lr > 0.00299f && o.lr < 0.00301f, "lr %g", o.lr);
    CHECK(!strcmp(o.save_dir, "/tmp/ck") && !strcmp(o.load_dir, "/tmp/old"), "dirs");
    CHECK_EQ(o.save_interval, 5);
    CHECK(o.profile_comm, "--profile-comm");
    CHECK(o.dp_overlap, "--dp-overlap");

    char *none[] = {"w", NULL};
    CHECK(parse(&o, none, true, true, err, sizeof err) == 0 && !o.config, "no flags: %s", err);
    CHECK(!o.profile_comm, "no --profile-comm by default");
    CHECK_EQ((long long)o.seed, 1);

    char *job[] = {"w", "--config", "job", "--steps", "3", NULL};
    CHECK(parse(&o, job, false, false, err, sizeof err) == 0 && !strcmp(o.config, "job"),
          "--config job (the job's own model): %s", err);
    expect_error((char *[]){"w", "--config", "nope", NULL}, false, false, "no config 'nope'");
    expect_error((char *[]){"w", "--config", "nope", NULL}, false, false, "use one of: job tiny");
    expect_error((char *[]){"w", "--steps", "0", NULL}, false, false, "--steps needs a number");
    expect_error((char *[]){"w", "--steps", "2.5", NULL}, false, false, "whole number");
    expect_error((char *[]){"w", "--steps", NULL}, false, false, "--steps needs a value");
    expect_error((char *[]){"w", "--steps", "3", NULL}, false, false, "both --config");
    expect_error((char *[]){"w", "--config", "tiny", "--steps", "3", "--save-interval", "2", NULL},
                 false, false, "--save-interval needs --save");
    expect_error((char *[]){"w", "--config", "tiny", "--steps", "3", NULL}, true, false,
                 "drop --dry-run");
    expect_error((char *[]){"w", "--config", "tiny", "--steps", "3", NULL}, false, true,
                 "--self-test exits before training");
    // A dry run counts --steps without training; with training flags it refuses.
    char *dry[] = {"w", "--steps", "7", NULL};
    CHECK(parse(&o, dry, true, false, err, sizeof err) == 0 && o.steps == 7 && !o.config,
          "a dry run's --steps: %s", err);
    expect_error((char *[]){"w", "--steps", "3", "--fp32", NULL}, true, false, "both --config");
    expect_error((char *[]){"w", "--save", "", NULL}, false, false, "--save needs a directory");
    expect_error((char *[]){"w", "--bogus", NULL}, false, false, "not a training flag");

    expect_error((char *[]){"w", "--lr", "0", NULL}, false, false, "--lr needs a number");
    expect_error((char *[]){"w", "--seed", "1.5", NULL}, false, false, "whole number");

    // --single-gpu: the same flags and bounds, plus its own; no gridd.
    char *single[] = {"w", "--single-gpu", "--config", "small", "--steps", "4", "--batch", "2",
                      "--dump", "/tmp/d.bin", "--cpu", "--lr", "0.002", NULL};
    CHECK(parse(&o, single, false, false, err, sizeof err) == 0, "--single-gpu flags: %s", err);
    CHECK(o.single_gpu && o.cpu && !o.describe, "--single-gpu, --cpu");
    CHECK_EQ(o.batch, 2);
    CHECK_EQ(o.steps, 4);
    CHECK(o.dump && !strcmp(o.dump, "/tmp/d.bin"), "--dump");
    char *describe[] = {"w", "--single-gpu", "--config", "1b", "--describe", NULL};
    CHECK(parse(&o, describe, false, false, err, sizeof err) == 0 && o.describe,
          "--describe needs no --steps: %s", err);
    expect_error((char *[]){"w", "--single-gpu", "--config", "tiny", "--steps", "1", "--cpu", NULL},
                 false, false, "--cpu only takes a --dump");
    expect_error((char *[]){"w", "--single-gpu", "--steps", "1", NULL}, false, false,
                 "--single-gpu needs --config NAME and --steps N");
    expect_error((char *[]){"w", "--single-gpu", "--config", "job", "--steps", "1", NULL}, false,
                 false, "a named config");
    char *ckpt[] = {"w", "--single-gpu", "--config", "tiny", "--steps", "6", "--save", "/tmp/c",
                    "--save-interval", "2", "--load", "/tmp/o", NULL};
    CHECK(parse(&o, ckpt, false, false, err, sizeof err) == 0, "--single-gpu checkpoints: %s",
          err);
    expect_error((char *[]){"w", "--single-gpu", "--config", "tiny", "--steps", "1", "--dump",
                            "/tmp/d", "--save", "/tmp/x", NULL},
                 false, false, "takes no --save or --load");
    expect_error((char *[]){"w", "--single-gpu", "--config", "tiny", "--steps", "1",
                            "--profile-comm", NULL},
                 false, false, "--single-gpu has none");
    expect_error((char *[]){"w", "--single-gpu", "--config", "tiny", "--steps", "1",
                            "--save-interval", "2", NULL},
                 false, false, "--save-interval needs --save");
    expect_error((char *[]){"w", "--single-gpu", "--config", "tiny", "--steps", "1", NULL}, true,
                 false, "without gridd");
    expect_error((char *[]){"w", "--config", "tiny", "--steps", "1", "--batch", "2", NULL}, false,
                 false, "go with --single-gpu");
    expect_error((char *[]){"w", "--batch", "0", NULL}, false, false, "--batch needs a number");
    expect_error((char *[]){"w", "--dump", "", NULL}, false, false, "--dump needs a file");

    // Saves every K steps and after the last; never without --save.
    train_options s;
    train_options_defaults(&s);
    s.steps = 10, s.save_interval = 4;
    CHECK(!train_should_save(&s, 4), "no --save: no checkpoint");
    s.save_dir = "/tmp/ck";
    int saved[11] = {0}, want[11] = {0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1};
    for (int k = 0; k <= 10; k++)
        saved[k] = train_should_save(&s, k);
    CHECK(!memcmp(saved, want, sizeof want), "saves after steps 4, 8 and 10");
    s.save_interval = 0;
    CHECK(!train_should_save(&s, 4) && train_should_save(&s, 10), "interval 0: only the last");

    hg_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.spec.global_batch_size = 16;
    plan.spec.model = hg_config_find("tiny")->model;
    CHECK(train_tokens_per_step(&plan) == 16.0 * 64, "tokens per step %g",
          train_tokens_per_step(&plan));

    test_check_job();
    return check_summary("test_train_run_args");
}
