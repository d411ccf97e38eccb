// The one command-line parser of every hgrid program: a table of options,
// one row each (name, argument kind, default, bounds, help), from which the
// parsing, the defaults, the --help text and the errors all come.
//
// Conventions it gives every program: `--flag value` and `--flag=value`;
// `--` ends the options (what follows are operands, even "-x"); -h/--help
// prints the help on stdout, --version prints "PROGRAM (hgrid) VERSION",
// both then exit 0; an unknown flag names the nearest known one; a number
// out of range names the range.
#ifndef HGRID_UTIL_CLI_H
#define HGRID_UTIL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

typedef enum {
    CLI_SWITCH,  // --flag: sets a bool to true
    CLI_COUNT,   // --flag (or -v, -vv): adds one to an int each time
    CLI_INT,     // --flag N: a whole number in [min, max] into an int
    CLI_NUM,     // --flag X: a number in [min, max] into a double
    CLI_STRING,  // --flag TEXT: a const char * (argv's own string)
    CLI_CALL,    // --flag VALUE: checked and stored by call()
    CLI_TEXT,    // no flag: a line of --help between the options (a heading)
} cli_kind;

typedef struct {
    const char *name; // without the leading "--"
    char short_name;  // e.g. 'v' for -v; 0: none
    cli_kind kind;
    void *dest;       // bool *, int *, double *, const char **; CLI_CALL: call's context
    const char *def;  // the default as a user writes it, applied before parsing;
                      // NULL: dest keeps what the program set (--help shows a
                      // number's value unless the help line says "default")
    double min, max;  // CLI_INT, CLI_NUM: inclusive bounds
    const char *arg;  // the value's name in --help: "N", "SECONDS", "HOST:PORT"
    const char *help; // what it does; "\n" starts a further help line
    // CLI_CALL: stores value (0), or writes a one-line reason without the
    // flag's name to err and returns -1.
    int (*call)(void *dest, const char *value, char *err, size_t errlen);
} cli_opt;

// One row each (designated, so a row names only what it uses).
#define CLI_OPT_SWITCH(n, d, h) {.name = (n), .kind = CLI_SWITCH, .dest = (d), .help = (h)}
#define CLI_OPT_COUNT(n, s, d, h) \
    {.name = (n), .short_name = (s), .kind = CLI_COUNT, .dest = (d), .help = (h)}
#define CLI_OPT_INT(n, d, def_, lo, hi, a, h) \
    {.name = (n), .kind = CLI_INT, .dest = (d), .def = (def_), .min = (lo), .max = (hi), \
     .arg = (a), .help = (h)}
#define CLI_OPT_NUM(n, d, def_, lo, hi, a, h) \
    {.name = (n), .kind = CLI_NUM, .dest = (d), .def = (def_), .min = (lo), .max = (hi), \
     .arg = (a), .help = (h)}
#define CLI_OPT_STRING(n, d, def_, a, h) \
    {.name = (n), .kind = CLI_STRING, .dest = (d), .def = (def_), .arg = (a), .help = (h)}
#define CLI_OPT_CALL(n, d, def_, a, h, fn) \
    {.name = (n), .kind = CLI_CALL, .dest = (d), .def = (def_), .arg = (a), .help = (h), \
     .call = (fn)}
#define CLI_OPT_TEXT(h) {.kind = CLI_TEXT, .help = (h)}
#define CLI_OPT_END {.name = NULL, .help = NULL}
// A macro's value as a string, for a row's default: CLI_STR(WIRE_DEFAULT_PORT).
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

// The flags another module parses (layout flags, training flags): parse
// consumes argv[*i] (and its value), advancing *i: 1 done, 0 not one of
// them, -1 bad (reason in err). names lists them for suggestions.
typedef struct {
    int (*parse)(void *ctx, int argc, char **argv, int *i, char *err, size_t errlen);
    void *ctx;
    const char *(*name_at)(size_t k); // the k-th flag's name without "--"; NULL past the end
    const char *help;                 // printed after the table's options
} cli_more;

typedef struct {
    const char *program;     // for messages and --version: "gridd", "hgridctl submit"
    const char *usage;       // --help's opening lines ("usage: ...\nWhat it does.\n")
    const cli_opt *opts;     // the table, ended by a row with neither name nor help
    const cli_more *more;    // NULL: none
    const char *epilog;      // --help's closing lines (exit status), or NULL
    int max_operands;        // arguments that are not options; more is an error
    bool stop_at_operand;    // the first operand ends the options (a command follows)
} cli_spec;

enum { CLI_OK = 0, CLI_EXIT = 1, CLI_USAGE = 2 };

// Applies the defaults, then parses argv[1..]. Operands (at most
// max_operands; with stop_at_operand the first one and all after it) are
// stored in order in operands[], their count in *n_operands. Returns CLI_OK;
// CLI_EXIT after printing --help or --version (exit 0); CLI_USAGE with a
// one-line reason in err (the caller prints it with "try PROGRAM --help").
int cli_parse(const cli_spec *spec, int argc, char **argv, char **operands, int *n_operands,
              char *err, size_t errlen);
// The --help text (usage, one line per option with its default, more's
// help, the epilog).
void cli_help(const cli_spec *spec, FILE *out);
// "PROGRAM (hgrid) VERSION" (PROGRAM: spec's first word).
void cli_version(const char *program, FILE *out);
// hgrid's version: `git describe` of the checkout it was built from, else
// the Makefile's VERSION.
const char *cli_version_string(void);
// addr with ":default_port" added when it names no port (HOST, [V6] or a
// bare IPv6 address); else addr itself (also a Unix socket path). buf
// holds the result.
const char *cli_host_port(const char *addr, int default_port, char *buf, size_t len);
// The name in names (NULL-terminated) nearest to typed, or NULL if none is
// near enough to suggest.
const char *cli_nearest(const char *typed, const char *const *names);
// Appends the user id in value (0 to 2^31-1) to uids (*count of at most
// max): the value of a repeatable --allow-uid. 0, or -1 with err set.
int cli_append_uid(uid_t *uids, int *count, int max, const char *value, char *err,
                   size_t errlen);

#endif
