// Streaming JSON writer.
#include "util/json.h"

#include <math.h>

void json_init(json_writer *w, FILE *out)
{
    w->out = out;
    w->depth = 0;
    w->has_items[0] = false;
    w->after_key = false;
}

// Separates a new value from the previous item of the open container.
static void before_value(json_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->has_items[w->depth])
        fputc(',', w->out);
    w->has_items[w->depth] = true;
}

static void open_container(json_writer *w, char c)
{
    before_value(w);
    fputc(c, w->out);
    if (w->depth + 1 < JSON_MAX_DEPTH)
        w->depth++;
    w->has_items[w->depth] = false;
}

static void close_container(json_writer *w, char c)
{
    fputc(c, w->out);
    if (w->depth > 0)
        w->depth--;
}

void json_begin_object(json_writer *w) { open_container(w, '{'); }
void json_end_object(json_writer *w) { close_container(w, '}'); }
void json_begin_array(json_writer *w) { open_container(w, '['); }
void json_end_array(json_writer *w) { close_container(w, ']'); }

static void write_escaped(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void json_key(json_writer *w, const char *key)
{
    before_value(w);
    write_escaped(w->out, key);
    fputc(':', w->out);
    w->after_key = true;
}

void json_int(json_writer *w, long long v)
{
    before_value(w);
    fprintf(w->out, "%lld", v);
}

void json_double(json_writer *w, double v)
{
    before_value(w);
    if (isfinite(v))
        fprintf(w->out, "%.9g", v);
    else
        fputs("null", w->out);
}

void json_bool(json_writer *w, bool v)
{
    before_value(w);
    fputs(v ? "true" : "false", w->out);
}

void json_string(json_writer *w, const char *s)
{
    before_value(w);
    write_escaped(w->out, s);
}

void json_null(json_writer *w)
{
    before_value(w);
    fputs("null", w->out);
}
