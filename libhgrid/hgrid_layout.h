// libhgrid's assignment in the layout engine's types (layout/layout.h), for
// programs that link the layout engine too (hgrid-worker, libhgrid_nccl):
// the module id, the coordinates and the validated plan of the job.
#ifndef HGRID_LAYOUT_VIEW_H
#define HGRID_LAYOUT_VIEW_H

#include "layout/layout.h"
#include "libhgrid/hgrid.h"

hg_module_id hgrid_module(const hgrid_worker *w);
const hg_coords *hgrid_coords(const hgrid_worker *w);
// The i-th module's coordinates of a colocated rank (0: hgrid_coords), NULL
// past hgrid_num_modules.
const hg_coords *hgrid_coords_at(const hgrid_worker *w, int i);
const hg_plan *hgrid_plan(const hgrid_worker *w);

#endif
