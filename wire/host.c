// A HostAssignment (one message per host) expanded back into the
// Assignment each of the host's workers receives.
#include <stdio.h>
#include <stdlib.h>

#include "wire/wire.h"

// Copies n groups into out (pointers in ptrs), each id_ref resolved to
// its id; -1 with why if one refers past the ids.
static int resolve_groups(const Hgrid__HostAssignment *ha, Hgrid__Group *const *in, size_t n,
                          Hgrid__Group *out, Hgrid__Group **ptrs, char *err, size_t errlen)
{
    for (size_t g = 0; g < n; g++) {
        out[g] = *in[g];
        uint32_t ref = out[g].id_ref;
        if (ref > ha->n_ids) {
            snprintf(err, errlen, "HostAssignment's group %s refers to id %u of %zu", out[g].name,
                     ref, ha->n_ids);
            return -1;
        }
        if (ref)
            out[g].nccl_id = ha->ids[ref - 1];
        out[g].id_ref = 0;
        ptrs[g] = &out[g];
    }
    return 0;
}

size_t wire_host_assignment_frame(const Hgrid__HostAssignment *ha, size_t i, const char *job,
                                  uint8_t **frame, char *err, size_t errlen)
{
    if (i >= ha->n_assignments || !ha->layout) {
        snprintf(err, errlen, "HostAssignment has no assignment %zu or no layout", i);
        return 0;
    }
    Hgrid__Assignment a = *ha->assignments[i];
    Hgrid__Group groups[HG_MAX_RANK_GROUPS], *ptrs[HG_MAX_RANK_GROUPS];
    Hgrid__Group co_groups[HG_MAX_RANK_GROUPS], *co_ptrs[HG_MAX_RANK_GROUPS];
    Hgrid__ModuleAssignment colocated, *colocated_ptrs[1] = {&colocated};
    if (a.n_groups > HG_MAX_RANK_GROUPS || a.n_colocated_modules > 1 ||
        (a.n_colocated_modules && a.colocated_modules[0]->n_groups > HG_MAX_RANK_GROUPS)) {
        snprintf(err, errlen, "HostAssignment's assignment %zu has %zu groups and %zu colocated "
                 "modules", i, a.n_groups, a.n_colocated_modules);
        return 0;
    }
    if (resolve_groups(ha, a.groups, a.n_groups, groups, ptrs, err, errlen))
        return 0;
    a.groups = ptrs;
    if (a.n_colocated_modules) {
        colocated = *a.colocated_modules[0];
        if (resolve_groups(ha, colocated.groups, colocated.n_groups, co_groups, co_ptrs, err,
                           errlen))
            return 0;
        colocated.groups = co_ptrs;
        a.colocated_modules = colocated_ptrs;
    }
    a.layout = ha->layout;
    a.job = (char *)job;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ASSIGNMENT;
    env.assignment = &a;
    size_t len = wire_pack(&env, frame);
    if (!len)
        snprintf(err, errlen, "out of memory packing an Assignment");
    return len;
}
