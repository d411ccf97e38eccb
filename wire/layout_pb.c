// Layouts on the wire: hg_layout_spec <-> hgrid.Layout.
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "wire/wire.h"

void wire_layout_from_spec(const hg_layout_spec *s, wire_layout *out)
{
    Hgrid__Layout *l = &out->layout;
    Hgrid__ModelConfig *m = &out->model;
    hgrid__layout__init(l);
    hgrid__model_config__init(m);
    l->encoder_tp = (uint32_t)s->encoder_tp;
    l->encoder_dp = (uint32_t)s->encoder_dp;
    l->llm_tp = (uint32_t)s->llm_tp;
    l->llm_cp = (uint32_t)s->llm_cp;
    l->llm_pp = (uint32_t)s->llm_pp;
    l->llm_dp = (uint32_t)s->llm_dp;
    l->llm_ep = (uint32_t)s->llm_ep;
    l->llm_expt_tp = (uint32_t)s->llm_expt_tp;
    l->llm_only = s->llm_only;
    l->world_size = (uint32_t)s->world_size;
    l->micro_batch_size = (uint32_t)s->micro_batch_size;
    l->global_batch_size = (uint32_t)s->global_batch_size;
    const hg_model_config *c = &s->model;
    m->num_layers = (uint32_t)c->num_layers;
    m->hidden_size = (uint32_t)c->hidden_size;
    m->num_attention_heads = (uint32_t)c->num_attention_heads;
    m->ffn_hidden_size = (uint32_t)c->ffn_hidden_size;
    m->vocab_size = (uint32_t)c->vocab_size;
    m->seq_length = (uint32_t)c->seq_length;
    m->num_experts = (uint32_t)c->num_experts;
    m->moe_router_topk = (uint32_t)c->moe_router_topk;
    m->encoder_num_layers = (uint32_t)c->encoder_num_layers;
    m->encoder_hidden_size = (uint32_t)c->encoder_hidden_size;
    m->encoder_num_attention_heads = (uint32_t)c->encoder_num_attention_heads;
    m->image_size = (uint32_t)c->image_size;
    m->patch_size = (uint32_t)c->patch_size;
    l->model = m;
    if (s->llm_offset_given) {
        hgrid__llm_offset__init(&out->llm_offset);
        out->llm_offset.rank = (uint32_t)s->llm_offset;
        l->llm_offset = &out->llm_offset;
    }
    l->colocated = s->colocated;
    l->make_vocab_size_divisible_by = (uint32_t)s->make_vocab_size_divisible_by;
    int n = s->num_encoders > 0 && s->num_encoders <= HG_MAX_ENCODERS ? s->num_encoders : 0;
    for (int i = 0; i < n; i++) {
        Hgrid__EncoderGrid *e = &out->encoders[i];
        hgrid__encoder_grid__init(e);
        e->name = (char *)s->encoders[i].name;
        e->tp = (uint32_t)s->encoders[i].tp;
        e->dp = (uint32_t)s->encoders[i].dp;
        out->encoder_ptrs[i] = e;
    }
    l->n_encoders = (size_t)n;
    l->encoders = out->encoder_ptrs;
    if (n) { // an encoder list replaces the shorthand; older readers refuse 0
        l->encoder_tp = 0;
        l->encoder_dp = 0;
    }
}

// Copies a wire value into an int field, refusing values past INT_MAX.
static int take(uint32_t v, int *out, const char *name, char *err, size_t errlen)
{
    if (v > INT_MAX) {
        snprintf(err, errlen, "layout field %s = %u is out of range", name, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int wire_layout_to_spec(const Hgrid__Layout *l, hg_layout_spec *s, char *err, size_t errlen)
{
    if (!l || !l->model) {
        snprintf(err, errlen, "layout is missing its model config");
        return -1;
    }
    const Hgrid__ModelConfig *m = l->model;
    hg_model_config *c = &s->model;
    s->llm_only = l->llm_only;
    int bad = take(l->encoder_tp, &s->encoder_tp, "encoder_tp", err, errlen) ||
              take(l->encoder_dp, &s->encoder_dp, "encoder_dp", err, errlen) ||
              take(l->llm_tp, &s->llm_tp, "llm_tp", err, errlen) ||
              take(l->llm_cp, &s->llm_cp, "llm_cp", err, errlen) ||
              take(l->llm_pp, &s->llm_pp, "llm_pp", err, errlen) ||
              take(l->llm_dp, &s->llm_dp, "llm_dp", err, errlen) ||
              take(l->llm_ep, &s->llm_ep, "llm_ep", err, errlen) ||
              take(l->llm_expt_tp, &s->llm_expt_tp, "llm_expt_tp", err, errlen) ||
              take(l->world_size, &s->world_size, "world_size", err, errlen) ||
              take(l->micro_batch_size, &s->micro_batch_size, "micro_batch_size", err, errlen) ||
              take(l->global_batch_size, &s->global_batch_size, "global_batch_size", err, errlen) ||
              take(m->num_layers, &c->num_layers, "num_layers", err, errlen) ||
              take(m->hidden_size, &c->hidden_size, "hidden_size", err, errlen) ||
              take(m->num_attention_heads, &c->num_attention_heads, "num_attention_heads", err,
                   errlen) ||
              take(m->ffn_hidden_size, &c->ffn_hidden_size, "ffn_hidden_size", err, errlen) ||
              take(m->vocab_size, &c->vocab_size, "vocab_size", err, errlen) ||
              take(m->seq_length, &c->seq_length, "seq_length", err, errlen) ||
              take(m->num_experts, &c->num_experts, "num_experts", err, errlen) ||
              take(m->moe_router_topk, &c->moe_router_topk, "moe_router_topk", err, errlen) ||
              take(m->encoder_num_layers, &c->encoder_num_layers, "encoder_num_layers", err,
                   errlen) ||
              take(m->encoder_hidden_size, &c->encoder_hidden_size, "encoder_hidden_size", err,
                   errlen) ||
              take(m->encoder_num_attention_heads, &c->encoder_num_attention_heads,
                   "encoder_num_attention_heads", err, errlen) ||
              take(m->image_size, &c->image_size, "image_size", err, errlen) ||
              take(m->patch_size, &c->patch_size, "patch_size", err, errlen) ||
              take(l->make_vocab_size_divisible_by, &s->make_vocab_size_divisible_by,
                   "make_vocab_size_divisible_by", err, errlen);
    if (bad)
        return -1;
    // Layouts from before issue 17: no offset given, non-colocated, padded
    // to a multiple of llm_tp (divisor 0), the one encoder of encoder_tp x
    // encoder_dp.
    s->llm_offset_given = l->llm_offset != NULL;
    s->llm_offset = 0;
    if (l->llm_offset && take(l->llm_offset->rank, &s->llm_offset, "llm_offset", err, errlen))
        return -1;
    s->colocated = l->colocated;
    s->encoder_shorthand = false;
    if (l->n_encoders > HG_MAX_ENCODERS) {
        snprintf(err, errlen, "layout has %zu encoders, at most %d", l->n_encoders,
                 HG_MAX_ENCODERS);
        return -1;
    }
    s->num_encoders = (int)l->n_encoders;
    for (int i = 0; i < s->num_encoders; i++) {
        const Hgrid__EncoderGrid *e = l->encoders[i];
        hg_encoder_spec *d = &s->encoders[i];
        if (!e->name || strlen(e->name) >= sizeof d->name) {
            snprintf(err, errlen, "layout encoder %d has no name or one over %zu bytes", i,
                     sizeof d->name - 1);
            return -1;
        }
        snprintf(d->name, sizeof d->name, "%s", e->name);
        if (take(e->tp, &d->tp, "encoders.tp", err, errlen) ||
            take(e->dp, &d->dp, "encoders.dp", err, errlen))
            return -1;
    }
    return 0;
}
