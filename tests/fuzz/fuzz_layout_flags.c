// libFuzzer: NUL-separated command-line words through the layout flag parser
// and the layout engine.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layout/layout.h"

#define MAX_WORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_WORDS];
    int argc = 0;
    for (char *p = text; argc < MAX_WORDS && p <= text + size; p += strlen(p) + 1)
        argv[argc++] = p;
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    char err[HG_ERR_LEN];
    for (int i = 0; i < argc;) {
        hg_flag_status st = hg_layout_parse_flag(&spec, argc, argv, &i, err, sizeof err);
        if (st != HG_FLAG_OK)
            i++;
    }
    hg_plan plan;
    if (hg_plan_build(&spec, &plan, err, sizeof err) == 0 && plan.world_size <= 1024) {
        static int members[1024];
        for (int i = 0; i < plan.num_modules; i++) {
            const hg_module_grid *m = &plan.modules[i];
            for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
                if (!hg_group_applies(m, (hg_group_kind)k))
                    continue;
                hg_group_canonical(m, (hg_group_kind)k);
                for (int g = 0; g < hg_group_count(m, (hg_group_kind)k); g++)
                    hg_group_members(m, (hg_group_kind)k, g, members);
            }
        }
        // Every rank's groups (both modules when colocated) and bridge peers,
        // in small worlds (the walk is quadratic).
        for (int r = 0; plan.world_size <= 64 && r < plan.world_size; r++) {
            const hg_module_grid *mods[2];
            int n = hg_plan_modules_of_rank(&plan, r, mods);
            for (int i = 0; i < n; i++) {
                hg_rank_group groups[HG_MAX_RANK_GROUPS];
                int ng = hg_rank_groups(&plan, NULL, mods[i], r, groups);
                for (int j = 0; j < ng; j++) {
                    hg_rank_group_members(&plan, mods[i], &groups[j], members);
                    if (groups[j].kind == HG_GROUP_BRIDGE) {
                        hg_bridge_peer peers[64];
                        hg_bridge_peers(&plan, groups[j].bridge, r, peers, 64);
                    }
                }
            }
        }
    }
    free(text);
    return 0;
}
