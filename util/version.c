// hgrid's version, as the Makefile found it when this was built.
#include "util/cli.h"

#include "hgrid_version.h"

const char *cli_version_string(void) { return HGRID_VERSION; }
