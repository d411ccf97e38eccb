// hgridctl submit: a validated layout to gridd as a new job.
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "ctl/ctl_conn.h"
#include "ctl/ctl_error.h"
#include "ctl/ctl_jobs.h"
#include "util/json.h"
#include "ctl/layout_args.h"
#include "wire/wire.h"

static int random_token(char *hex, size_t len)
{
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        return -1;
    for (size_t i = 0; i < sizeof bytes && 2 * i + 2 < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

static void write_json(const char *name, const char *token, bool generated, int world_size,
                       const char *message)
{
    json_writer w;
    json_init(&w, stdout);
    json_begin_object(&w);
    json_key(&w, "job");
    json_string(&w, name);
    json_key(&w, "token");
    json_string(&w, token);
    json_key(&w, "token_generated");
    json_bool(&w, generated);
    json_key(&w, "world_size");
    json_int(&w, world_size);
    json_key(&w, "message");
    json_string(&w, message);
    json_end_object(&w);
    fputc('\n', stdout);
}

int ctl_submit(const ctl_options *opt, int argc, char **argv)
{
    const char *name = NULL, *token = NULL;
    bool json = false;
    hg_plan plan;
    const cli_opt opts[] = {
        CLI_OPT_STRING("job", &name, NULL, "NAME", "the job's name (required; " WIRE_JOB_NAME_RULE ")"),
        CLI_OPT_STRING("token", &token, NULL, "T",
                       "the token workers join with (default: a random\n128-bit one, printed)"),
        CLI_OPT_SWITCH("json", &json,
                       "one object: {\"job\", \"token\", \"token_generated\", \"world_size\",\n"
                       "\"message\"}; the token is there whether generated or given"),
        CLI_OPT_END,
    };
    const layout_command cmd = {
        "submit",
        "usage: hgridctl submit --job NAME [--token T] [--json] [layout flags]\n"
        "Validates the layout and submits it to gridd as job NAME. Workers join with the\n"
        "job's token; without --token a random 128-bit token is generated and printed\n"
        "alone on stdout (gridd's answer goes to stderr); with --token gridd's answer is\n"
        "printed.\n",
        opts, "Exit status: 0 submitted, 1 invalid layout or refused by gridd, 2 usage error.\n"};
    int status = layout_args_parse(&cmd, argc, argv, &plan);
    if (status != LAYOUT_ARGS_OK)
        return status == LAYOUT_ARGS_HELP ? 0 : status;
    if (!name)
        return ctl_usage_error("submit", "--job NAME is required");
    if (!wire_job_name_ok(name, strlen(name))) {
        char why[200];
        snprintf(why, sizeof why, "--job '%.64s': " WIRE_JOB_NAME_RULE, name);
        return ctl_usage_error("submit", why);
    }
    char generated[33];
    if (!token) {
        if (random_token(generated, sizeof generated))
            return ctl_fail(CTL_FAILED, CTL_ERR_SYSTEM,
                            "hgridctl: cannot read random bytes for a token; pass --token T");
        token = generated;
    }
    if (strlen(token) < 1 || strlen(token) > 256)
        return ctl_usage_error("submit", "--token must be 1-256 bytes");
    Hgrid__Envelope env;
    Hgrid__SubmitJob submit;
    wire_layout layout;
    wire_envelope_init(&env);
    hgrid__submit_job__init(&submit);
    wire_layout_from_spec(&plan.spec, &layout);
    submit.job = (char *)name;
    submit.token.data = (uint8_t *)token;
    submit.token.len = strlen(token);
    submit.layout = &layout.layout;
    env.msg_case = HGRID__ENVELOPE__MSG_SUBMIT;
    env.submit = &submit;
    Hgrid__Envelope *reply = ctl_request(opt, &env, HGRID__ENVELOPE__MSG_OK);
    if (!reply)
        return CTL_FAILED;
    if (json) {
        write_json(name, token, token == generated, plan.world_size, reply->ok->message);
    } else if (token == generated) {
        fprintf(stderr, "hgridctl: %s\n", reply->ok->message);
        printf("%s\n", generated);
    } else {
        printf("%s\n", reply->ok->message);
    }
    wire_free_envelope(reply);
    return CTL_OK;
}
