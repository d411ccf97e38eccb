// util/cli.h, the parser every program uses: defaults from the table,
// `--flag value` and `--flag=value`, `--`, short clusters (-vv), bounds
// named in the error, the nearest flag for a typo, the hook for another
// module's flags, the generated help, and HOST -> HOST:7420.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "util/cli.h"

typedef struct {
    const char *listen, *name;
    double timeout;
    int jobs, verbose, layout_tp;
    bool dry;
} opts_t;

static int upper_only(void *dest, const char *value, char *err, size_t errlen)
{
    for (const char *p = value; *p; p++)
        if (*p < 'A' || *p > 'Z') {
            snprintf(err, errlen, "needs capital letters");
            return -1;
        }
    *(const char **)dest = value;
    return 0;
}

// A stand-in for layout/flags.c: "--tp N" (1..8), advancing *i past it.
static int more_parse(void *ctx, int argc, char **argv, int *i, char *err, size_t errlen)
{
    if (strcmp(argv[*i], "--tp"))
        return 0;
    if (*i + 1 >= argc || atoi(argv[*i + 1]) < 1) {
        snprintf(err, errlen, "--tp needs a positive value");
        return -1;
    }
    *(int *)ctx = atoi(argv[*i + 1]);
    *i += 2;
    return 1;
}

static const char *more_name(size_t k) { return k == 0 ? "tp" : NULL; }

static opts_t o;
static char *operands[8];
static int n_operands;
static char err[256];

static int parse(int max_operands, bool stop, int argc, ...)
{
    static char *argv[16];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "prog";
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    memset(&o, 0, sizeof o);
    const cli_opt table[] = {
        CLI_OPT_STRING("listen", &o.listen, "0.0.0.0:7420", "HOST:PORT", "where to listen"),
        CLI_OPT_NUM("timeout", &o.timeout, "3", 0.5, 60, "SEC", "how long"),
        CLI_OPT_INT("max-jobs", &o.jobs, "256", 1, 1000, "N", "jobs at once"),
        CLI_OPT_COUNT("verbose", 'v', &o.verbose, "more log"),
        CLI_OPT_SWITCH("dry-run", &o.dry, "no GPU"),
        CLI_OPT_CALL("name", &o.name, NULL, "NAME", "a name", upper_only),
        CLI_OPT_END,
    };
    const cli_more more = {more_parse, &o.layout_tp, more_name, "layout flags: --tp N\n"};
    const cli_spec spec = {.program = "prog", .usage = "usage: prog\n", .opts = table,
                           .more = &more, .epilog = "Exit status: 0.\n",
                           .max_operands = max_operands, .stop_at_operand = stop};
    err[0] = '\0';
    return cli_parse(&spec, argc, argv, operands, &n_operands, err, sizeof err);
}

#define ERR_HAS(text) CHECK(strstr(err, text) != NULL, "error '%s' lacks '%s'", err, text)

int main(void)
{
    // Defaults come from the table.
    CHECK_EQ(parse(0, false, 1), CLI_OK);
    CHECK(!strcmp(o.listen, "0.0.0.0:7420"), "listen default %s", o.listen);
    CHECK(o.timeout == 3 && o.jobs == 256 && !o.dry && o.verbose == 0, "defaults");

    // Both spellings, switches, counts and clusters.
    CHECK_EQ(parse(0, false, 8, "--listen", "h:1", "--timeout=2.5", "--max-jobs=7", "-vv",
                   "--verbose", "--dry-run"), CLI_OK);
    CHECK(!strcmp(o.listen, "h:1") && o.timeout == 2.5 && o.jobs == 7 && o.verbose == 3 && o.dry,
          "values: %s %g %d %d %d", o.listen, o.timeout, o.jobs, o.verbose, o.dry);
    CHECK_EQ(parse(0, false, 2, "--listen="), CLI_OK);
    CHECK(!strcmp(o.listen, ""), "--listen= gives the empty value");

    // Numbers: not a number, out of range (the range is named), not whole.
    CHECK_EQ(parse(0, false, 3, "--max-jobs", "99999999999"), CLI_USAGE);
    ERR_HAS("--max-jobs '99999999999' is out of range: a whole number from 1 to 1000");
    CHECK_EQ(parse(0, false, 2, "--max-jobs=2.5"), CLI_USAGE);
    ERR_HAS("--max-jobs '2.5' is not a whole number (from 1 to 1000)");
    CHECK_EQ(parse(0, false, 3, "--max-jobs", " 5"), CLI_USAGE);
    ERR_HAS("--max-jobs ' 5' is not a whole number");
    CHECK_EQ(parse(0, false, 3, "--timeout", "0.1"), CLI_USAGE);
    ERR_HAS("--timeout '0.1' is out of range: a number from 0.5 to 60");
    CHECK_EQ(parse(0, false, 3, "--timeout", "nan"), CLI_USAGE);
    ERR_HAS("--timeout 'nan' is not a number");
    CHECK_EQ(parse(0, false, 2, "--timeout"), CLI_USAGE);
    ERR_HAS("--timeout needs a value (SEC)");
    CHECK_EQ(parse(0, false, 2, "--dry-run=yes"), CLI_USAGE);
    ERR_HAS("--dry-run takes no value");
    CHECK_EQ(parse(0, false, 3, "--name", "abc"), CLI_USAGE);
    ERR_HAS("--name 'abc': needs capital letters");
    CHECK_EQ(parse(0, false, 2, "--name=ABC"), CLI_OK);
    CHECK(o.name && !strcmp(o.name, "ABC"), "--name=ABC");

    // Typos name the nearest flag, the other module's flags included.
    CHECK_EQ(parse(0, false, 3, "--lisen", "x"), CLI_USAGE);
    ERR_HAS("unknown option '--lisen' (did you mean --listen?)");
    CHECK_EQ(parse(0, false, 2, "--max-job=3"), CLI_USAGE);
    ERR_HAS("(did you mean --max-jobs?)");
    CHECK_EQ(parse(0, false, 2, "--dry"), CLI_USAGE);
    ERR_HAS("(did you mean --dry-run?)");
    CHECK_EQ(parse(0, false, 3, "--tq", "2"), CLI_USAGE);
    ERR_HAS("(did you mean --tp?)");
    CHECK_EQ(parse(0, false, 2, "--completely-different"), CLI_USAGE);
    CHECK(!strstr(err, "did you mean"), "no suggestion for a far name: %s", err);
    CHECK_EQ(parse(0, false, 2, "-x"), CLI_USAGE);
    ERR_HAS("unknown option '-x'");

    // The other module's flags, in both spellings.
    CHECK_EQ(parse(0, false, 3, "--tp", "4"), CLI_OK);
    CHECK_EQ(o.layout_tp, 4);
    CHECK_EQ(parse(0, false, 2, "--tp=5"), CLI_OK);
    CHECK_EQ(o.layout_tp, 5);
    CHECK_EQ(parse(0, false, 2, "--tp=0"), CLI_USAGE);
    ERR_HAS("--tp needs a positive value");

    // Operands, "--" and the operand limit.
    CHECK_EQ(parse(1, false, 3, "--", "-x"), CLI_OK);
    CHECK(n_operands == 1 && !strcmp(operands[0], "-x"), "-- then -x is an operand");
    CHECK_EQ(parse(1, false, 4, "job", "--max-jobs", "3"), CLI_OK);
    CHECK(n_operands == 1 && o.jobs == 3, "options after the operand");
    CHECK_EQ(parse(1, false, 3, "a", "b"), CLI_USAGE);
    ERR_HAS("unexpected argument 'b'");
    CHECK_EQ(parse(0, false, 2, "-"), CLI_USAGE);
    ERR_HAS("unexpected argument '-'");
    // stop_at_operand: a command and everything after it are operands.
    CHECK_EQ(parse(8, true, 5, "-v", "show", "--max-jobs", "x"), CLI_OK);
    CHECK(n_operands == 3 && o.verbose == 1 && o.jobs == 256, "stop at the command");

    // --help and --version print and ask to exit 0.
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int help = parse(0, false, 2, "--help"), version = parse(0, false, 2, "--version"),
        h = parse(0, false, 2, "-h");
    fclose(stdout);
    stdout = saved;
    CHECK(help == CLI_EXIT && version == CLI_EXIT && h == CLI_EXIT, "help %d version %d -h %d",
          help, version, h);

    // The help comes from the table: each row, its default, the hook's help.
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    memset(&o, 0, sizeof o);
    o.jobs = 12;
    const cli_opt table[] = {
        CLI_OPT_STRING("listen", &o.listen, "0.0.0.0:7420", "HOST:PORT", "where to listen"),
        CLI_OPT_INT("max-jobs", &o.jobs, NULL, 1, 1000, "N", "jobs at once"),
        CLI_OPT_COUNT("verbose", 'v', &o.verbose, "more log\nsecond line"),
        CLI_OPT_END,
    };
    const cli_more more = {more_parse, &o.layout_tp, more_name, "layout flags: --tp N\n"};
    const cli_spec spec = {.program = "prog sub", .usage = "usage: prog\n", .opts = table,
                           .more = &more, .epilog = "Exit status: 0.\n"};
    cli_help(&spec, mem);
    cli_version(spec.program, mem);
    fclose(mem);
    CHECK(strstr(text, "  --listen HOST:PORT         where to listen (default 0.0.0.0:7420)\n"),
          "help row with default:\n%s", text);
    CHECK(strstr(text, "  --max-jobs N               jobs at once (default 12)\n"),
          "a number's default from the program's value");
    CHECK(strstr(text, "  -v, --verbose              more log\n                             "
                       "second line\n"), "short name and a continued line");
    CHECK(strstr(text, "layout flags: --tp N\n") && strstr(text, "Exit status: 0.\n") &&
          strstr(text, "--version"), "hook help, epilog, --version");
    CHECK(strstr(text, "\nprog (hgrid) ") && strstr(text, cli_version_string()),
          "version line names the program's first word: %s", text);
    free(text);

    // --coordinator HOST means the default port.
    char buf[64];
    CHECK(!strcmp(cli_host_port("head", 7420, buf, sizeof buf), "head:7420"), "HOST");
    CHECK(!strcmp(cli_host_port("head:1", 7420, buf, sizeof buf), "head:1"), "HOST:PORT");
    CHECK(!strcmp(cli_host_port("::1", 7420, buf, sizeof buf), "[::1]:7420"), "bare IPv6");
    CHECK(!strcmp(cli_host_port("[::1]", 7420, buf, sizeof buf), "[::1]:7420"), "[IPv6]");
    CHECK(!strcmp(cli_host_port("[::1]:9", 7420, buf, sizeof buf), "[::1]:9"), "[IPv6]:PORT");
    CHECK(!strcmp(cli_host_port("/run/g.sock", 7420, buf, sizeof buf), "/run/g.sock"),
          "a Unix socket path");
    return check_summary("test_cli");
}
