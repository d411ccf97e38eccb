// A small streaming JSON writer: commas and nesting handled, strings escaped.
#ifndef HGRID_JSON_H
#define HGRID_JSON_H

#include <stdbool.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

typedef struct {
    FILE *out;
    int depth;
    bool has_items[JSON_MAX_DEPTH]; // whether the open container has an item yet
    bool after_key;
} json_writer;

void json_init(json_writer *w, FILE *out);
void json_begin_object(json_writer *w);
void json_end_object(json_writer *w);
void json_begin_array(json_writer *w);
void json_end_array(json_writer *w);
void json_key(json_writer *w, const char *key);
void json_int(json_writer *w, long long v);
void json_double(json_writer *w, double v);
void json_bool(json_writer *w, bool v);
void json_string(json_writer *w, const char *s);
void json_null(json_writer *w);

#endif
