// Printing a validated plan: JSON (hgridctl plan --json, show --json) and text.
#ifndef HGRID_PLAN_PRINT_H
#define HGRID_PLAN_PRINT_H

#include <stdio.h>

#include "util/json.h"
#include "layout/layout.h"

// The object `hgridctl plan --json` prints.
void plan_write_json(const hg_plan *plan, json_writer *w);
// "rank 4" or "ranks 4-7": a module's ranks as its text lines name them.
void plan_module_ranks(const hg_module_grid *m, char *buf, size_t len);
// Summary, a picture of the grids, the bridge and the groups.
void plan_write_text(const hg_plan *plan, FILE *out);

#endif
