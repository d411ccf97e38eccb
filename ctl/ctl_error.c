// hgridctl's failures: a line on stderr, and the JSON error object under --json.
#include "ctl/ctl_error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/json.h"

static bool json_mode;

void ctl_error_set_json(bool on) { json_mode = on; }
bool ctl_error_json(void) { return json_mode; }

static void print(const char *code, const char *line)
{
    fprintf(stderr, "%s\n", line);
    if (!json_mode)
        return;
    json_writer w;
    json_init(&w, stdout);
    json_begin_object(&w);
    json_key(&w, "error");
    json_begin_object(&w);
    json_key(&w, "code");
    json_string(&w, code);
    json_key(&w, "message");
    json_string(&w, line);
    json_end_object(&w);
    json_end_object(&w);
    fputc('\n', stdout);
    fflush(stdout);
}

int ctl_fail(int status, const char *code, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    print(code, line);
    return status;
}

int ctl_usage_error(const char *cmd, const char *what)
{
    return ctl_fail(CTL_USAGE, CTL_ERR_USAGE, "hgridctl %s: %s (try 'hgridctl %s --help')", cmd,
                    what, cmd);
}

// "ERROR_UNKNOWN_JOB" -> "unknown_job", from protobuf-c's enum descriptor.
static void code_name(Hgrid__ErrorCode code, char *buf, size_t len)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&hgrid__error_code__descriptor, (int)code);
    const char *name = v ? v->name : "ERROR_UNSPECIFIED";
    if (strncmp(name, "ERROR_", 6) == 0)
        name += 6;
    size_t i = 0;
    for (; name[i] && i + 1 < len; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[i] = '\0';
}

int ctl_fail_refused(const Hgrid__Error *e)
{
    char code[64];
    code_name(e->code, code, sizeof code);
    return ctl_fail(CTL_FAILED, code, "hgridctl: gridd refused: %s", e->message);
}
