// The fp32 CPU model: forward, backward and the AdamW step, composed of the
// reference ops. Both modules share the transformer stack code.
#include "model/cpu_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "model/config.h"
#include "model/cpu_moe.h"
#include "model/data.h"
#include "model/rng.h"

// Activations of L pre-LN blocks over (B, T, C), saved for the backward.
typedef struct {
    int L, B, T, C, F, NH, causal;
    float *res;                 // (L + 1, B, T, C) residual stream into each block, then out
    float *ln1, *ln1_mean, *ln1_rstd; // (L, B, T, C), (L, B, T)
    float *qkv;                 // (L, B, T, 3C)
    float *att, *lse;           // (L, B, T, C), (L, B, NH, T)
    float *res2;                // (L, B, T, C) residual after attention
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;      // (L, B, T, F)
    float *dres;                // (B, T, C) gradient of the residual stream
    float *dC, *dF, *dqkv;      // (B, T, C), (B, T, F), (B, T, 3C) backward scratch
    cpu_moe moe;                // the MLP when moe.E > 0 (F is then 0 above)
} stack;

// Encoder arrays hold one (B, ...) part per encoder (E of them), in order.
struct hg_cpu_acts {
    stack enc[HG_MAX_ENCODERS], llm;
    float *patches;                       // (E, B, P, patch_dim) copy of the input
    float *enc_lnf, *enc_lnf_mean, *enc_lnf_rstd; // (E, B, P, Ce), (E, B, P)
    float *img;                           // (E, B, P, C) projected image embeddings
    float *text;                          // (B, Tt, C) caption token + position embeddings
    int *tokens;                          // (B, Tt)
    int *targets;                         // (B, T) next token, 0 where masked
    float *mask;                          // (B, T) 1 on caption targets
    float count;                          // number of caption targets
    float *lnf, *lnf_mean, *lnf_rstd;     // (B, T, C), (B, T)
    float *logits;                        // (B, T, V)
    float *losses;                        // (B, T)
    float *denc_lnf;                      // (B, P, Ce)
};

static float *fzalloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static int stack_alloc(stack *s, int L, int B, int T, int C, int F, int NH, int causal, int E,
                       int K)
{
    int dense_F = E ? 0 : F;
    size_t btc = (size_t)B * T * C, bt = (size_t)B * T, btf = (size_t)B * T * dense_F;
    *s = (stack){.L = L, .B = B, .T = T, .C = C, .F = dense_F, .NH = NH, .causal = causal};
    if (E && cpu_moe_alloc(&s->moe, L, B * T, C, F, E, K) != 0)
        return -1;
    s->res = fzalloc((L + 1) * btc);
    s->ln1 = fzalloc(L * btc), s->ln1_mean = fzalloc(L * bt), s->ln1_rstd = fzalloc(L * bt);
    s->qkv = fzalloc(L * 3 * btc);
    s->att = fzalloc(L * btc), s->lse = fzalloc(L * bt * NH);
    s->res2 = fzalloc(L * btc);
    s->ln2 = fzalloc(L * btc), s->ln2_mean = fzalloc(L * bt), s->ln2_rstd = fzalloc(L * bt);
    s->fch = fzalloc(L * btf), s->fch_gelu = fzalloc(L * btf);
    s->dres = fzalloc(btc), s->dC = fzalloc(btc), s->dF = fzalloc(btf), s->dqkv = fzalloc(3 * btc);
    float *all[] = {s->res, s->ln1, s->ln1_mean, s->ln1_rstd, s->qkv, s->att, s->lse, s->res2,
                    s->ln2, s->ln2_mean, s->ln2_rstd, s->fch, s->fch_gelu, s->dres, s->dC,
                    s->dF, s->dqkv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return 0;
}

static void stack_free(stack *s)
{
    if (s->moe.E)
        cpu_moe_free(&s->moe);
    float *all[] = {s->res, s->ln1, s->ln1_mean, s->ln1_rstd, s->qkv, s->att, s->lse, s->res2,
                    s->ln2, s->ln2_mean, s->ln2_rstd, s->fch, s->fch_gelu, s->dres, s->dC,
                    s->dF, s->dqkv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

// s->res[0] holds the input; leaves the output in s->res[L].
static void stack_forward(stack *s, const hg_param_table *t, float *params)
{
    int N = s->B * s->T, C = s->C, F = s->F, HD = C / s->NH;
    size_t btc = (size_t)N * C, bt = N, btf = (size_t)N * F;
    s->moe.aux = 0;
    s->moe.routing = 0;
    for (int l = 0; l < s->L; l++) {
        hg_block_view w;
        hg_block_view_at(t, params, sizeof(float), l, &w);
        float *x = s->res + l * btc, *ln1 = s->ln1 + l * btc, *qkv = s->qkv + l * 3 * btc;
        float *att = s->att + l * btc, *res2 = s->res2 + l * btc, *ln2 = s->ln2 + l * btc;
        float *fch = s->fch + l * btf, *fchg = s->fch_gelu + l * btf;
        float *out = s->res + (l + 1) * btc;
        ref_layernorm_forward(ln1, s->ln1_mean + l * bt, s->ln1_rstd + l * bt, x, w.ln1_w,
                              w.ln1_b, N, C);
        ref_matmul_forward(qkv, ln1, w.qkv_w, w.qkv_b, N, C, 3 * C);
        ref_attention_forward(att, s->lse + l * bt * s->NH, qkv, s->B, s->T, s->NH, HD,
                              s->causal);
        ref_matmul_forward(res2, att, w.attn_proj_w, w.attn_proj_b, N, C, C);
        ref_add_forward(res2, res2, x, btc);
        ref_layernorm_forward(ln2, s->ln2_mean + l * bt, s->ln2_rstd + l * bt, res2, w.ln2_w,
                              w.ln2_b, N, C);
        if (s->moe.E) {
            cpu_moe_forward(&s->moe, l, &w, ln2, out);
        } else {
            ref_matmul_forward(fch, ln2, w.fc_w, w.fc_b, N, C, F);
            ref_gelu_forward(fchg, fch, btf);
            ref_matmul_forward(out, fchg, w.fc_proj_w, w.fc_proj_b, N, F, C);
        }
        ref_add_forward(out, out, res2, btc);
    }
}

// s->dres holds d(loss)/d(res[L]); leaves d(loss)/d(res[0]) there.
static void stack_backward(stack *s, const hg_param_table *t, float *params, float *grads)
{
    int N = s->B * s->T, C = s->C, F = s->F, HD = C / s->NH;
    size_t btc = (size_t)N * C, bt = N, btf = (size_t)N * F;
    for (int l = s->L - 1; l >= 0; l--) {
        hg_block_view w, g;
        hg_block_view_at(t, params, sizeof(float), l, &w);
        hg_block_view_at(t, grads, sizeof(float), l, &g);
        float *x = s->res + l * btc, *ln1 = s->ln1 + l * btc, *qkv = s->qkv + l * 3 * btc;
        float *att = s->att + l * btc, *res2 = s->res2 + l * btc, *ln2 = s->ln2 + l * btc;
        float *fch = s->fch + l * btf, *fchg = s->fch_gelu + l * btf;
        if (s->moe.E) {
            cpu_moe_backward(&s->moe, l, &w, &g, ln2, s->dres, s->dC);
        } else {
            ref_matmul_backward(s->dF, g.fc_proj_w, g.fc_proj_b, s->dres, fchg, w.fc_proj_w, N, F,
                                C);
            ref_gelu_backward(s->dF, fch, s->dF, btf);
            ref_matmul_backward(s->dC, g.fc_w, g.fc_b, s->dF, ln2, w.fc_w, N, C, F);
        }
        ref_layernorm_backward(s->dres, g.ln2_w, g.ln2_b, s->dC, res2, w.ln2_w,
                               s->ln2_mean + l * bt, s->ln2_rstd + l * bt, N, C);
        ref_matmul_backward(s->dC, g.attn_proj_w, g.attn_proj_b, s->dres, att, w.attn_proj_w,
                            N, C, C);
        ref_attention_backward(s->dqkv, s->dC, qkv, att, s->lse + l * bt * s->NH, s->B, s->T,
                               s->NH, HD, s->causal);
        ref_matmul_backward(s->dC, g.qkv_w, g.qkv_b, s->dqkv, ln1, w.qkv_w, N, C, 3 * C);
        ref_layernorm_backward(s->dres, g.ln1_w, g.ln1_b, s->dC, x, w.ln1_w,
                               s->ln1_mean + l * bt, s->ln1_rstd + l * bt, N, C);
    }
}

hg_cpu_model *hg_cpu_model_create(const hg_model_config *cfg, int B, uint64_t seed)
{
    char err[256];
    if (hg_config_check(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "hg_cpu_model_create: %s\n", err);
        return NULL;
    }
    hg_cpu_model *m = calloc(1, sizeof *m);
    hg_cpu_acts *a = calloc(1, sizeof *a);
    if (!m || !a) {
        free(m), free(a);
        fprintf(stderr, "hg_cpu_model_create: out of memory\n");
        return NULL;
    }
    m->cfg = *cfg;
    m->B = B;
    m->E = hg_image_streams(cfg);
    m->acts = a;
    hg_param_table_build(&m->enc_table, HG_MODULE_ENCODER, cfg);
    hg_param_table_build(&m->llm_table, HG_MODULE_LLM, cfg);
    size_t ne = m->E * m->enc_table.total, nl = m->llm_table.total;
    m->enc_params = fzalloc(ne), m->enc_grads = fzalloc(ne);
    m->enc_m = fzalloc(ne), m->enc_v = fzalloc(ne);
    m->llm_params = fzalloc(nl), m->llm_grads = fzalloc(nl);
    m->llm_m = fzalloc(nl), m->llm_v = fzalloc(nl);

    int P = hg_num_patches(cfg), Tt = hg_text_len(cfg), T = cfg->seq_length;
    int C = cfg->hidden_size, Ce = cfg->encoder_hidden_size, V = cfg->vocab_size;
    size_t bp = (size_t)B * P, bt = (size_t)B * T, ebp = m->E * bp;
    int bad = 0;
    for (int e = 0; e < m->E; e++)
        bad |= stack_alloc(&a->enc[e], cfg->encoder_num_layers, B, P, Ce,
                           hg_encoder_ffn_size(cfg), cfg->encoder_num_attention_heads, 0, 0, 0);
    bad |= stack_alloc(&a->llm, cfg->num_layers, B, T, C, hg_ffn_size(cfg),
                       cfg->num_attention_heads, 1, cfg->num_experts, cfg->moe_router_topk);
    a->patches = fzalloc(ebp * hg_patch_dim(cfg));
    a->enc_lnf = fzalloc(ebp * Ce), a->enc_lnf_mean = fzalloc(ebp), a->enc_lnf_rstd = fzalloc(ebp);
    a->img = fzalloc(ebp * C);
    a->text = fzalloc((size_t)B * Tt * C);
    a->tokens = calloc((size_t)B * Tt, sizeof(int));
    a->targets = calloc(bt, sizeof(int));
    a->mask = fzalloc(bt);
    a->lnf = fzalloc(bt * C), a->lnf_mean = fzalloc(bt), a->lnf_rstd = fzalloc(bt);
    a->logits = fzalloc(bt * V);
    a->losses = fzalloc(bt);
    a->denc_lnf = fzalloc(bp * Ce);
    void *all[] = {m->enc_params, m->enc_grads, m->enc_m, m->enc_v, m->llm_params, m->llm_grads,
                   m->llm_m, m->llm_v, a->patches, a->enc_lnf, a->enc_lnf_mean,
                   a->enc_lnf_rstd, a->img, a->text, a->tokens, a->targets, a->mask, a->lnf,
                   a->lnf_mean, a->lnf_rstd, a->logits, a->losses, a->denc_lnf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        bad |= !all[i];
    if (bad) {
        hg_cpu_model_free(m);
        fprintf(stderr, "hg_cpu_model_create: out of memory for batch %d\n", B);
        return NULL;
    }
    for (int e = 0; e < m->E; e++)
        hg_params_init(&m->enc_table, hg_encoder_seed(seed, e),
                       m->enc_params + e * m->enc_table.total);
    hg_params_init(&m->llm_table, seed, m->llm_params);
    return m;
}

void hg_cpu_model_free(hg_cpu_model *m)
{
    if (!m)
        return;
    hg_cpu_acts *a = m->acts;
    for (int e = 0; e < m->E; e++)
        stack_free(&a->enc[e]);
    stack_free(&a->llm);
    void *all[] = {m->enc_params, m->enc_grads, m->enc_m, m->enc_v, m->llm_params, m->llm_grads,
                   m->llm_m, m->llm_v, a->patches, a->enc_lnf, a->enc_lnf_mean,
                   a->enc_lnf_rstd, a->img, a->text, a->tokens, a->targets, a->mask, a->lnf,
                   a->lnf_mean, a->lnf_rstd, a->logits, a->losses, a->denc_lnf, a};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(m);
}

// Encoder e's tensors (e in scope).
#define ENC_AT(buf, id)                                                                          \
    ((float *)hg_tensor_at(&m->enc_table, (buf) + e * m->enc_table.total, sizeof(float), (id)))
#define ENC(id) ENC_AT(m->enc_params, id)
#define DENC(id) ENC_AT(m->enc_grads, id)
#define LLM(id) ((float *)hg_tensor_at(&m->llm_table, m->llm_params, sizeof(float), (id)))
#define DLLM(id) ((float *)hg_tensor_at(&m->llm_table, m->llm_grads, sizeof(float), (id)))

float hg_cpu_model_forward(hg_cpu_model *m, const float *patches, const int *tokens)
{
    hg_cpu_acts *a = m->acts;
    const hg_model_config *cfg = &m->cfg;
    int B = m->B, P = hg_num_patches(cfg), Tt = hg_text_len(cfg), T = cfg->seq_length;
    int C = cfg->hidden_size, Ce = cfg->encoder_hidden_size, V = cfg->vocab_size;
    int D = hg_patch_dim(cfg), E = m->E, EP = E * P;
    size_t bp = (size_t)B * P;
    memcpy(a->patches, patches, sizeof(float) * E * bp * D);
    memcpy(a->tokens, tokens, sizeof(int) * B * Tt);

    // Each encoder: patch embedding + positions, blocks, final LayerNorm,
    // projection; its image embeddings at LLM positions [e P, (e + 1) P).
    stack *s = &a->llm;
    const float *wte = LLM(HG_LLM_WTE), *wpe = LLM(HG_LLM_WPE);
    for (int e = 0; e < E; e++) {
        stack *st = &a->enc[e];
        float *lnf = a->enc_lnf + e * bp * Ce, *img = a->img + e * bp * C;
        ref_matmul_forward(st->res, a->patches + e * bp * D, ENC(HG_ENC_PATCH_W),
                           ENC(HG_ENC_PATCH_B), B * P, D, Ce);
        ref_position_embedding_forward(st->res, st->res, ENC(HG_ENC_POS), B, P, Ce);
        stack_forward(st, &m->enc_table, m->enc_params + e * m->enc_table.total);
        ref_layernorm_forward(lnf, a->enc_lnf_mean + e * bp, a->enc_lnf_rstd + e * bp,
                              st->res + (size_t)st->L * bp * Ce, ENC(HG_ENC_LNF_W),
                              ENC(HG_ENC_LNF_B), B * P, Ce);
        ref_matmul_forward(img, lnf, ENC(HG_ENC_PROJ_W), ENC(HG_ENC_PROJ_B), B * P, Ce, C);
        ref_position_embedding_forward(img, img, wpe + (size_t)e * P * C, B, P, C);
        for (int b = 0; b < B; b++)
            memcpy(s->res + ((size_t)b * T + e * P) * C, img + (size_t)b * P * C,
                   sizeof(float) * P * C);
    }

    // Caption tokens after the image embeddings.
    ref_embedding_forward(a->text, a->tokens, wte, wpe + (size_t)EP * C, B, Tt, C, V);
    for (int b = 0; b < B; b++)
        memcpy(s->res + ((size_t)b * T + EP) * C, a->text + (size_t)b * Tt * C,
               sizeof(float) * Tt * C);
    stack_forward(s, &m->llm_table, m->llm_params);
    ref_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, s->res + (size_t)s->L * B * T * C,
                          LLM(HG_LLM_LNF_W), LLM(HG_LLM_LNF_B), B * T, C);
    ref_matmul_forward(a->logits, a->lnf, wte, NULL, B * T, C, V);

    // Loss on the caption's next tokens only.
    int *ct = malloc(sizeof(int) * B * Tt);
    hg_caption_targets(a->tokens, B, Tt, ct);
    a->count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int target = t < EP ? -1 : ct[b * Tt + t - EP];
            a->targets[b * T + t] = target < 0 ? 0 : target;
            a->mask[b * T + t] = target < 0 ? 0.0f : 1.0f;
            a->count += target >= 0;
        }
    free(ct);
    ref_crossentropy_forward_backward(a->logits, a->losses, a->targets, a->mask, 0, B * T, V, V, 0);
    double sum = 0;
    for (int i = 0; i < B * T; i++)
        sum += a->losses[i];
    m->aux_loss = s->moe.aux;
    m->routing = s->moe.routing;
    return (float)(sum / a->count);
}

void hg_cpu_model_routing(const hg_cpu_model *m, int *topk)
{
    const cpu_moe *moe = &m->acts->llm.moe;
    memcpy(topk, moe->topk, sizeof(int) * moe->L * moe->N * moe->K);
}

void hg_cpu_model_backward(hg_cpu_model *m)
{
    hg_cpu_acts *a = m->acts;
    const hg_model_config *cfg = &m->cfg;
    int B = m->B, P = hg_num_patches(cfg), Tt = hg_text_len(cfg), T = cfg->seq_length;
    int C = cfg->hidden_size, Ce = cfg->encoder_hidden_size, V = cfg->vocab_size;
    int D = hg_patch_dim(cfg), E = m->E, EP = E * P;
    size_t bp = (size_t)B * P;
    memset(m->enc_grads, 0, sizeof(float) * E * m->enc_table.total);
    memset(m->llm_grads, 0, sizeof(float) * m->llm_table.total);

    // LM head and final LayerNorm; the logits become their gradient in place.
    stack *s = &a->llm;
    ref_crossentropy_forward_backward(a->logits, a->losses, a->targets, a->mask, 1.0f / a->count,
                                      B * T, V, V, 1);
    ref_matmul_backward(s->dC, DLLM(HG_LLM_WTE), NULL, a->logits, a->lnf, LLM(HG_LLM_WTE),
                        B * T, C, V);
    memset(s->dres, 0, sizeof(float) * B * T * C);
    ref_layernorm_backward(s->dres, DLLM(HG_LLM_LNF_W), DLLM(HG_LLM_LNF_B), s->dC,
                           s->res + (size_t)s->L * B * T * C, LLM(HG_LLM_LNF_W), a->lnf_mean,
                           a->lnf_rstd, B * T, C);
    stack_backward(s, &m->llm_table, m->llm_params, m->llm_grads);

    // Split the input's gradient into each encoder's image rows and the
    // caption rows.
    float *dtext = a->text; // its forward values are spent
    for (int b = 0; b < B; b++)
        memcpy(dtext + (size_t)b * Tt * C, s->dres + ((size_t)b * T + EP) * C,
               sizeof(float) * Tt * C);
    float *dwpe = DLLM(HG_LLM_WPE);
    ref_embedding_backward(DLLM(HG_LLM_WTE), dwpe + (size_t)EP * C, dtext, a->tokens, B, Tt, C,
                           V);

    // Each encoder: projection, final LayerNorm, blocks, positions, patch embedding.
    for (int e = 0; e < E; e++) {
        float *dimg = a->img + e * bp * C; // its forward values are spent
        for (int b = 0; b < B; b++)
            memcpy(dimg + (size_t)b * P * C, s->dres + ((size_t)b * T + e * P) * C,
                   sizeof(float) * P * C);
        ref_position_embedding_backward(dwpe + (size_t)e * P * C, dimg, B, P, C);
        stack *st = &a->enc[e];
        float *lnf = a->enc_lnf + e * bp * Ce;
        float *enc_params = m->enc_params + e * m->enc_table.total;
        ref_matmul_backward(a->denc_lnf, DENC(HG_ENC_PROJ_W), DENC(HG_ENC_PROJ_B), dimg, lnf,
                            ENC(HG_ENC_PROJ_W), B * P, Ce, C);
        memset(st->dres, 0, sizeof(float) * B * P * Ce);
        ref_layernorm_backward(st->dres, DENC(HG_ENC_LNF_W), DENC(HG_ENC_LNF_B), a->denc_lnf,
                               st->res + (size_t)st->L * bp * Ce, ENC(HG_ENC_LNF_W),
                               a->enc_lnf_mean + e * bp, a->enc_lnf_rstd + e * bp, B * P, Ce);
        stack_backward(st, &m->enc_table, enc_params, m->enc_grads + e * m->enc_table.total);
        ref_position_embedding_backward(DENC(HG_ENC_POS), st->dres, B, P, Ce);
        ref_matmul_backward(NULL, DENC(HG_ENC_PATCH_W), DENC(HG_ENC_PATCH_B), st->dres,
                            a->patches + e * bp * D, ENC(HG_ENC_PATCH_W), B * P, D, Ce);
    }
}

// AdamW on every tensor of one module, decaying only the tensors marked so.
static void adamw_module(const hg_param_table *t, float *params, const float *grads, float *mo,
                         float *v, const hg_optim_config *o, float scale, int step)
{
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        size_t off = ti->offset;
        ref_adamw_step(params + off, NULL, grads + off, mo + off, v + off, ti->count, o->lr,
                       o->beta1, o->beta2, o->eps, ti->decay ? o->weight_decay : 0, scale, step);
    }
}

float hg_cpu_model_step(hg_cpu_model *m, const hg_optim_config *o)
{
    float sq = 0;
    ref_global_norm_squared(&sq, m->enc_grads, m->E * m->enc_table.total);
    ref_global_norm_squared(&sq, m->llm_grads, m->llm_table.total);
    float norm = sqrtf(sq), scale = hg_clip_scale(o, norm);
    m->step++;
    for (int e = 0; e < m->E; e++) {
        size_t at = e * m->enc_table.total;
        adamw_module(&m->enc_table, m->enc_params + at, m->enc_grads + at, m->enc_m + at,
                     m->enc_v + at, o, scale, m->step);
    }
    adamw_module(&m->llm_table, m->llm_params, m->llm_grads, m->llm_m, m->llm_v, o, scale, m->step);
    return norm;
}
