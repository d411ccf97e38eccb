// hgrid-lines: copies standard input to standard output a line at a time,
// each line prefixed and written whole under a lock on the output, so that
// several copies (hgrid-ssh runs one per host) can share one pipe without
// cutting each other's lines, however long (sed -u writes a line longer than
// its buffer in pieces).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cli.h"
#include "util/whole_lines.h"

int main(int argc, char **argv)
{
    const char *prefix = "";
    const cli_opt opts[] = {
        CLI_OPT_STRING("prefix", &prefix, NULL, "TEXT", "put before every line (hgrid-ssh: \"HOST: \")"),
        CLI_OPT_END,
    };
    const cli_spec spec = {
        .program = "hgrid-lines",
        .usage = "usage: hgrid-lines [--prefix TEXT]\n"
                 "Copies standard input to standard output line by line, each line written\n"
                 "whole under a POSIX lock on the output: copies sharing a pipe never cut\n"
                 "each other's lines. A last line without a newline gets one.\n",
        .opts = opts,
        .epilog = "Exit status: 0 at the end of the input, 1 when the output fails, 2 usage error.\n",
    };
    char err[256];
    int n;
    int rc = cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err);
    if (rc == CLI_USAGE)
        fprintf(stderr, "hgrid-lines: %s (try 'hgrid-lines --help')\n", err);
    if (rc)
        return rc == CLI_EXIT ? 0 : rc;
    size_t prefix_len = strlen(prefix);
    char *line = NULL, *out = NULL;
    size_t line_cap = 0, out_cap = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, stdin)) > 0) {
        size_t need = prefix_len + (size_t)len + 1;
        if (need > out_cap) {
            char *bigger = realloc(out, need);
            if (!bigger) {
                fprintf(stderr, "hgrid-lines: no memory for a line of %zd bytes\n", len);
                return 1;
            }
            out = bigger;
            out_cap = need;
        }
        memcpy(out, prefix, prefix_len);
        memcpy(out + prefix_len, line, (size_t)len);
        size_t total = prefix_len + (size_t)len;
        if (out[total - 1] != '\n')
            out[total++] = '\n';
        if (whole_lines_put(stdout, out, total) != 0) {
            fprintf(stderr, "hgrid-lines: cannot write standard output: %s\n", strerror(errno));
            return 1;
        }
    }
    free(line);
    free(out);
    return 0;
}
