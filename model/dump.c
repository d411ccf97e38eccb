// Writes the model-state dump that tests/torch/model.py compares against.
#include "model/dump.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/config.h"

static int put(FILE *f, const void *p, size_t size, size_t n)
{
    return fwrite(p, size, n, f) == n ? 0 : -1;
}

static int put_table(FILE *f, const hg_param_table *t)
{
    int32_t n = t->num_tensors;
    int bad = put(f, &n, 4, 1);
    for (int i = 0; i < t->num_tensors; i++) {
        const hg_tensor_info *ti = &t->tensors[i];
        char name[48] = {0};
        strncpy(name, ti->name, sizeof name - 1);
        int32_t ints[5] = {ti->ndim, ti->shape[0], ti->shape[1], ti->shape[2], ti->shape[3]};
        int64_t range[2] = {(int64_t)ti->offset, (int64_t)ti->count};
        int32_t decay = ti->decay;
        bad |= put(f, name, 1, sizeof name) | put(f, ints, 4, 5) | put(f, range, 8, 2) |
               put(f, &decay, 4, 1);
    }
    int64_t total = (int64_t)t->total;
    return bad | put(f, &total, 8, 1);
}

int hg_dump_write(const char *path, const hg_dump *d)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "hg_dump_write: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    const hg_model_config *c = d->cfg;
    char magic[8] = "HGDUMP1", mode[16] = {0};
    strncpy(mode, d->mode, sizeof mode - 1);
    int32_t cfg[14] = {c->num_layers, c->hidden_size, c->num_attention_heads,
                       c->ffn_hidden_size, c->vocab_size, c->seq_length, c->num_experts,
                       c->moe_router_topk, c->encoder_num_layers, c->encoder_hidden_size,
                       c->encoder_num_attention_heads, c->image_size, c->patch_size, d->B};
    float opt[7] = {d->opt->lr, d->opt->beta1, d->opt->beta2, d->opt->eps,
                    d->opt->weight_decay, d->opt->max_grad_norm, HG_MOE_AUX_COEFF};
    int32_t steps = d->steps;
    size_t np = (size_t)d->B * hg_num_patches(c) * hg_patch_dim(c);
    size_t nt = (size_t)d->B * hg_text_len(c);
    int bad = put(f, magic, 1, 8) | put(f, mode, 1, 16) | put(f, cfg, 4, 14) | put(f, opt, 4, 7) |
              put(f, &steps, 4, 1) | put_table(f, d->enc) | put_table(f, d->llm);
    bad |= put(f, d->enc_params, 4, d->enc->total) | put(f, d->llm_params, 4, d->llm->total);
    bad |= put(f, d->patches, 4, np) | put(f, d->tokens, 4, nt);
    bad |= put(f, &d->loss, 4, 1) | put(f, &d->aux_loss, 4, 1);
    bad |= put(f, d->enc_grads, 4, d->enc->total) | put(f, d->llm_grads, 4, d->llm->total);
    if (c->num_experts)
        bad |= put(f, d->routing, 4, (size_t)c->num_layers * d->B * c->seq_length *
                                         c->moe_router_topk);
    bad |= put(f, d->step_losses, 4, steps) | put(f, d->step_norms, 4, steps);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "hg_dump_write: writing %s failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
