// A HostAssignment (one message per host) expanded back into the
// Assignment each of the host's workers receives.
#include <stdio.h>
#include <stdlib.h>

#include "wire/wire.h"

size_t wire_host_assignment_frame(const Hgrid__HostAssignment *ha, size_t i, const char *job,
                                  uint8_t **frame, char *err, size_t errlen)
{
    if (i >= ha->n_assignments || !ha->layout) {
        snprintf(err, errlen, "HostAssignment has no assignment %zu or no layout", i);
        return 0;
    }
    Hgrid__Assignment a = *ha->assignments[i];
    Hgrid__Group groups[HG_NUM_GROUP_KINDS + 1], *ptrs[HG_NUM_GROUP_KINDS + 1];
    if (a.n_groups > HG_NUM_GROUP_KINDS + 1) {
        snprintf(err, errlen, "HostAssignment's assignment %zu has %zu groups", i, a.n_groups);
        return 0;
    }
    for (size_t g = 0; g < a.n_groups; g++) {
        groups[g] = *a.groups[g];
        uint32_t ref = groups[g].id_ref;
        if (ref > ha->n_ids) {
            snprintf(err, errlen, "HostAssignment's group %s refers to id %u of %zu",
                     groups[g].name, ref, ha->n_ids);
            return 0;
        }
        if (ref)
            groups[g].nccl_id = ha->ids[ref - 1];
        groups[g].id_ref = 0;
        ptrs[g] = &groups[g];
    }
    a.groups = ptrs;
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
