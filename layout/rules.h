// Helpers the layout rules share (private to layout/).
#ifndef HGRID_LAYOUT_RULES_H
#define HGRID_LAYOUT_RULES_H

#include <stddef.h>

typedef struct {
    const char *flag;
    int value;
} hg_named_value;

// Formats the one-line reason into err; returns -1.
int hg_rule_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Rule 1: every size is a positive integer.
int hg_rule_positive(const hg_named_value *v, int n, char *err, size_t errlen);

#endif
