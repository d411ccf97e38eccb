// libhgrid: host, device and rank defaults from the launcher's environment.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "layout/layout.h"
#include "libhgrid/hgrid.h"
#include "util/cli.h"

static int env_int(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end;
    long x = strtol(v, &end, 10);
    return *end || x < 0 || x > HG_MAX_WORLD ? -1 : (int)x;
}

void hgrid_default_host(char *buf, size_t buflen)
{
    // Slurm's name for the node, where it differs from gethostname(), is
    // the one its users know; any one name per host keeps tp groups local.
    const char *env = getenv("HGRID_HOSTNAME");
    if (!env || !*env)
        env = getenv("SLURMD_NODENAME");
    if (env && *env) {
        snprintf(buf, buflen, "%s", env);
        return;
    }
    if (gethostname(buf, buflen) != 0 || !*buf)
        snprintf(buf, buflen, "localhost");
    buf[buflen - 1] = '\0';
}

int hgrid_default_device(void)
{
    int d = env_int("LOCAL_RANK");
    if (d < 0)
        d = env_int("SLURM_LOCALID");
    return d < 0 ? 0 : d;
}

int hgrid_launcher_rank(void)
{
    int r = env_int("RANK");
    return r >= 0 ? r : env_int("SLURM_PROCID");
}

const char *hgrid_version(void) { return cli_version_string(); }
