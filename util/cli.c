// The table-driven command-line parser (util/cli.h).
#include "util/cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HELP_COLUMN 29
#define MAX_NAMES 512

static bool is_end(const cli_opt *o) { return !o->name && !o->help; }
static bool takes_value(const cli_opt *o)
{
    return o->kind != CLI_SWITCH && o->kind != CLI_COUNT && o->kind != CLI_TEXT;
}

// "--name" and its value, or "-c".
static void flag_text(const cli_opt *o, char *buf, size_t len)
{
    if (o->name)
        snprintf(buf, len, "--%s", o->name);
    else
        snprintf(buf, len, "-%c", o->short_name);
}

static int set_value(const cli_opt *o, const char *value, char *err, size_t errlen)
{
    char flag[80];
    flag_text(o, flag, sizeof flag);
    char *end;
    switch (o->kind) {
    case CLI_STRING:
        *(const char **)o->dest = value;
        return 0;
    case CLI_CALL: {
        char why[200] = "";
        if (o->call(o->dest, value, why, sizeof why) == 0)
            return 0;
        snprintf(err, errlen, "%s '%.64s': %s", flag, value, why);
        return -1;
    }
    case CLI_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || isspace((unsigned char)*value)) {
            snprintf(err, errlen, "%s '%.64s' is not a whole number (from %.15g to %.15g)", flag,
                     value, o->min, o->max);
            return -1;
        }
        if (errno == ERANGE || (double)v < o->min || (double)v > o->max) {
            snprintf(err, errlen, "%s '%.64s' is out of range: a whole number from %.15g to %.15g",
                     flag, value, o->min, o->max);
            return -1;
        }
        *(int *)o->dest = (int)v;
        return 0;
    }
    case CLI_NUM: {
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end || isnan(v) || isspace((unsigned char)*value)) {
            snprintf(err, errlen, "%s '%.64s' is not a number (from %g to %g)", flag, value,
                     o->min, o->max);
            return -1;
        }
        if (!(v >= o->min && v <= o->max)) {
            snprintf(err, errlen, "%s '%.64s' is out of range: a number from %g to %g", flag, value,
                     o->min, o->max);
            return -1;
        }
        *(double *)o->dest = v;
        return 0;
    }
    case CLI_SWITCH:
        *(bool *)o->dest = true;
        return 0;
    case CLI_COUNT:
        (*(int *)o->dest)++;
        return 0;
    case CLI_TEXT:
        break;
    }
    return 0;
}

static size_t collect_names(const cli_spec *spec, const char **names)
{
    size_t n = 0;
    names[n++] = "help";
    names[n++] = "version";
    for (const cli_opt *o = spec->opts; o && !is_end(o); o++)
        if (o->name && n + 1 < MAX_NAMES)
            names[n++] = o->name;
    if (spec->more && spec->more->name_at)
        for (size_t k = 0; n + 1 < MAX_NAMES; k++) {
            const char *name = spec->more->name_at(k);
            if (!name)
                break;
            names[n++] = name;
        }
    names[n] = NULL;
    return n;
}

static size_t edit_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b), row[96];
    if (la >= 95 || lb >= 95)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *cli_nearest(const char *typed, const char *const *names)
{
    while (*typed == '-')
        typed++;
    size_t len = strcspn(typed, "="), best_d = 99, best_edit = 99;
    const char *best = NULL;
    for (const char *const *n = names; *n; n++) {
        size_t edit = edit_distance(typed, len, *n), d = edit;
        if (len >= 3 && strncmp(*n, typed, len) == 0 && d > 1)
            d = 1; // an abbreviation; among equals the fewest edits wins
        if (d < best_d || (d == best_d && edit < best_edit)) {
            best_d = d;
            best_edit = edit;
            best = *n;
        }
    }
    return best && (best_d <= 2 || best_d * 3 <= len) ? best : NULL;
}

static int unknown(const cli_spec *spec, const char *arg, char *err, size_t errlen)
{
    const char *names[MAX_NAMES];
    collect_names(spec, names);
    const char *near = arg[1] == '-' || strlen(arg) > 2 ? cli_nearest(arg, names) : NULL;
    if (near)
        snprintf(err, errlen, "unknown option '%.64s' (did you mean --%s?)", arg, near);
    else
        snprintf(err, errlen, "unknown option '%.64s'", arg);
    return CLI_USAGE;
}

// Hands "--name[=value]" to spec->more; 1 consumed, 0 not its flag, -1 error.
static int parse_more(const cli_spec *spec, int argc, char **argv, int *i, char *err,
                      size_t errlen)
{
    const cli_more *m = spec->more;
    const char *eq = strchr(argv[*i], '=');
    if (!eq)
        return m->parse(m->ctx, argc, argv, i, err, errlen);
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - argv[*i]), argv[*i]);
    char *pair[3] = {name, (char *)eq + 1, NULL};
    int j = 0, rc = m->parse(m->ctx, 2, pair, &j, err, errlen);
    if (rc == 1 && j == 1) {
        snprintf(err, errlen, "%s takes no value", name);
        return -1;
    }
    if (rc == 1)
        (*i)++;
    return rc;
}

static int parse_long(const cli_spec *spec, int argc, char **argv, int *i, char *err,
                      size_t errlen)
{
    const char *arg = argv[*i], *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (len == 4 && !strncmp(name, "help", 4) && !eq) {
        cli_help(spec, stdout);
        return CLI_EXIT;
    }
    if (len == 7 && !strncmp(name, "version", 7) && !eq) {
        cli_version(spec->program, stdout);
        return CLI_EXIT;
    }
    for (const cli_opt *o = spec->opts; o && !is_end(o); o++) {
        if (!o->name || strlen(o->name) != len || strncmp(o->name, name, len))
            continue;
        if (!takes_value(o)) {
            if (eq) {
                snprintf(err, errlen, "--%s takes no value", o->name);
                return CLI_USAGE;
            }
            set_value(o, NULL, err, errlen);
            (*i)++;
            return CLI_OK;
        }
        const char *value = eq ? eq + 1 : *i + 1 < argc ? argv[*i + 1] : NULL;
        if (!value) {
            snprintf(err, errlen, "--%s needs a value (%s)", o->name, o->arg ? o->arg : "VALUE");
            return CLI_USAGE;
        }
        if (set_value(o, value, err, errlen))
            return CLI_USAGE;
        *i += eq ? 1 : 2;
        return CLI_OK;
    }
    if (spec->more) {
        int rc = parse_more(spec, argc, argv, i, err, errlen);
        if (rc < 0)
            return CLI_USAGE;
        if (rc > 0)
            return CLI_OK;
    }
    return unknown(spec, arg, err, errlen);
}

// "-v", "-vv", "-h", "-c VALUE".
static int parse_short(const cli_spec *spec, int argc, char **argv, int *i, char *err,
                       size_t errlen)
{
    const char *arg = argv[*i];
    for (const char *c = arg + 1; *c; c++) {
        if (*c == 'h') {
            cli_help(spec, stdout);
            return CLI_EXIT;
        }
        const cli_opt *o = spec->opts;
        while (o && !is_end(o) && o->short_name != *c)
            o++;
        if (!o || is_end(o))
            return unknown(spec, arg, err, errlen);
        if (takes_value(o)) {
            const char *value = c[1] ? c + 1 : *i + 1 < argc ? argv[++*i] : NULL;
            if (!value) {
                snprintf(err, errlen, "-%c needs a value (%s)", *c, o->arg ? o->arg : "VALUE");
                return CLI_USAGE;
            }
            if (set_value(o, value, err, errlen))
                return CLI_USAGE;
            break;
        }
        set_value(o, NULL, err, errlen);
    }
    (*i)++;
    return CLI_OK;
}

static int add_operand(const cli_spec *spec, const char *arg, char **operands, int *n,
                       char *err, size_t errlen)
{
    if (*n >= spec->max_operands) {
        snprintf(err, errlen, "unexpected argument '%.64s'", arg);
        return CLI_USAGE;
    }
    operands[(*n)++] = (char *)arg;
    return CLI_OK;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, char **operands, int *n_operands,
              char *err, size_t errlen)
{
    *n_operands = 0;
    for (const cli_opt *o = spec->opts; o && !is_end(o); o++)
        if (o->def && o->kind != CLI_TEXT && set_value(o, o->def, err, errlen))
            return CLI_USAGE; // a table's own default is wrong: a bug, said as such
    bool options = true;
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        int rc = CLI_OK;
        if (options && !strcmp(arg, "--")) {
            options = false;
            i++;
            continue;
        }
        if (!options || arg[0] != '-' || !arg[1]) {
            if (spec->stop_at_operand) {
                while (i < argc && rc == CLI_OK)
                    rc = add_operand(spec, argv[i++], operands, n_operands, err, errlen);
                return rc;
            }
            rc = add_operand(spec, arg, operands, n_operands, err, errlen);
            i++;
        } else if (arg[1] == '-') {
            rc = parse_long(spec, argc, argv, &i, err, errlen);
        } else {
            rc = parse_short(spec, argc, argv, &i, err, errlen);
        }
        if (rc != CLI_OK)
            return rc;
    }
    return CLI_OK;
}

static void help_row(FILE *out, const char *left, const char *help, const char *def)
{
    int col = fprintf(out, "  %s", left);
    if (col > HELP_COLUMN - 2) {
        fputc('\n', out);
        col = 0;
    }
    const char *line = help ? help : "";
    for (;;) {
        size_t n = strcspn(line, "\n");
        fprintf(out, "%*s%.*s", HELP_COLUMN - col, "", (int)n, line);
        col = 0;
        line += n;
        if (line[0] != '\n' || !line[1])
            break;
        fputc('\n', out);
        line++;
    }
    if (def)
        fprintf(out, " (default %s)", def);
    fputc('\n', out);
}

void cli_help(const cli_spec *spec, FILE *out)
{
    fputs(spec->usage, out);
    fputc('\n', out);
    for (const cli_opt *o = spec->opts; o && !is_end(o); o++) {
        if (o->kind == CLI_TEXT) {
            fprintf(out, "%s\n", o->help);
            continue;
        }
        char left[128];
        int n = 0;
        if (o->short_name)
            n = snprintf(left, sizeof left, "-%c%s", o->short_name, o->name ? ", " : "");
        if (o->name)
            n += snprintf(left + n, sizeof left - (size_t)n, "--%s", o->name);
        if (takes_value(o))
            snprintf(left + n, sizeof left - (size_t)n, " %s",
                     o->arg ? o->arg : o->kind == CLI_INT ? "N" : o->kind == CLI_NUM ? "X" : "VALUE");
        // Without def, a number's default is the value the program set.
        char def[64] = "";
        if (o->def)
            snprintf(def, sizeof def, "%s", o->def);
        else if (o->help && !strstr(o->help, "default") && o->kind == CLI_INT && *(int *)o->dest)
            snprintf(def, sizeof def, "%d", *(int *)o->dest);
        else if (o->help && !strstr(o->help, "default") && o->kind == CLI_NUM && *(double *)o->dest)
            snprintf(def, sizeof def, "%g", *(double *)o->dest);
        help_row(out, left, o->help, *def ? def : NULL);
    }
    help_row(out, "-h, --help", "print this help and exit", NULL);
    help_row(out, "--version", "print the program's name and version and exit", NULL);
    if (spec->more && spec->more->help)
        fprintf(out, "\n%s", spec->more->help);
    if (spec->epilog)
        fprintf(out, "\n%s", spec->epilog);
}

void cli_version(const char *program, FILE *out)
{
    fprintf(out, "%.*s (hgrid) %s\n", (int)strcspn(program, " "), program, cli_version_string());
}

const char *cli_host_port(const char *addr, int default_port, char *buf, size_t len)
{
    const char *colon = strchr(addr, ':');
    bool bracketed = addr[0] == '[';
    if (strchr(addr, '/') || (bracketed && strstr(addr, "]:")) ||
        (!bracketed && colon && !strchr(colon + 1, ':')))
        return addr; // a Unix socket, or a port given
    bool bare_v6 = !bracketed && colon;
    if ((size_t)snprintf(buf, len, bare_v6 ? "[%s]:%d" : "%s:%d", addr, default_port) >= len)
        return addr;
    return buf;
}

int cli_append_uid(uid_t *uids, int *count, int max, const char *value, char *err,
                   size_t errlen)
{
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (end == value || *end || errno || n < 0 || n > 0x7fffffffL) {
        snprintf(err, errlen, "needs a user id from 0 to 2147483647");
        return -1;
    }
    if (*count == max) {
        snprintf(err, errlen, "may be given at most %d times", max);
        return -1;
    }
    uids[(*count)++] = (uid_t)n;
    return 0;
}
