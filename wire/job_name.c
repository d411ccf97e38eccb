// The rule for new job names (WIRE_JOB_NAME_RULE).
#include <string.h>

#include "wire/wire.h"

bool wire_job_name_ok(const char *name, size_t len)
{
    if (len < 1 || len > WIRE_JOB_NAME_MAX || name[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name[i] ||
            !strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i]))
            return false;
    return true;
}
