// The single-GPU model: buffers, forward, backward and the optimizer step,
// composed of the kernels library's launchers on one stream.
#include "model/gpu_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/cuda_check.h"
#include "model/data.h"
#include "model/gpu_moe.h"

// Activations of L blocks over (B, T, C): type dt unless marked fp32.
typedef struct {
    int L, B, T, C, F, NH, causal;
    char *res;                        // (L + 1, B, T, C)
    char *ln1, *qkv, *att, *res2, *ln2, *fch, *fch_gelu; // (L, B, T, C | 3C | F)
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd; // (L, B, T) fp32
    float *lse;                       // (L, B, NH, T) fp32
    char *dres, *dC, *dF, *dqkv;      // (B, T, C | F | 3C) backward scratch
    gpu_moe moe;                      // the MLP when moe.E > 0 (F is then 0 above)
} gstack;

typedef struct {
    hg_param_table table;
    float *master, *grads, *m, *v; // (total) fp32
    char *work;                    // (total) dt; the master itself in fp32 mode
} gmodule;

#define MAX_ALLOCS 128

struct hg_gpu_model {
    hg_model_config cfg;
    int B, P, Tt, T, C, Ce, V, D;
    kdtype dt;
    size_t es; // bytes per dt element
    gmodule enc, llm;
    gstack enc_acts, llm_acts;
    float *patches_f32;  // (B, P, D) upload staging
    char *patches;       // (B, P, D)
    int *tokens;         // (B, Tt)
    int *targets;        // (B, T)
    float *mask;         // (B, T)
    char *enc_lnf, *img, *text, *lnf, *logits, *denc_lnf;
    float *enc_lnf_mean, *enc_lnf_rstd, *lnf_mean, *lnf_rstd, *losses, *norm_sq;
    int *h_targets;
    float *h_mask, *h_losses;
    float count, aux_loss;
    float *h_aux; // (L) the LLM layers' load-balancing losses
    int step;
    cudaStream_t stream;
    void *allocs[MAX_ALLOCS];
    int num_allocs;
};

static void *dalloc(hg_gpu_model *m, size_t bytes)
{
    void *p;
    if (m->num_allocs == MAX_ALLOCS) {
        fprintf(stderr, "hg_gpu_model: more than %d buffers\n", MAX_ALLOCS);
        exit(EXIT_FAILURE);
    }
    cuda_check(cudaMalloc(&p, bytes ? bytes : 1));
    cuda_check(cudaMemset(p, 0, bytes ? bytes : 1));
    m->allocs[m->num_allocs++] = p;
    return p;
}

static void *moe_alloc(void *model, size_t bytes) { return dalloc(model, bytes); }

static void stack_alloc(hg_gpu_model *m, gstack *s, int L, int T, int C, int F, int NH,
                        int causal, int E, int K)
{
    int dense_F = E ? 0 : F;
    size_t bt = (size_t)m->B * T, btc = bt * C, btf = bt * dense_F, es = m->es;
    *s = (gstack){.L = L, .B = m->B, .T = T, .C = C, .F = dense_F, .NH = NH, .causal = causal};
    if (E)
        gpu_moe_alloc(&s->moe, L, m->B * T, C, F, E, K, m->dt, moe_alloc, m);
    s->res = dalloc(m, (L + 1) * btc * es);
    s->ln1 = dalloc(m, L * btc * es), s->qkv = dalloc(m, L * 3 * btc * es);
    s->att = dalloc(m, L * btc * es), s->res2 = dalloc(m, L * btc * es);
    s->ln2 = dalloc(m, L * btc * es);
    s->fch = dalloc(m, L * btf * es), s->fch_gelu = dalloc(m, L * btf * es);
    s->ln1_mean = dalloc(m, L * bt * 4), s->ln1_rstd = dalloc(m, L * bt * 4);
    s->ln2_mean = dalloc(m, L * bt * 4), s->ln2_rstd = dalloc(m, L * bt * 4);
    s->lse = dalloc(m, L * bt * NH * 4);
    s->dres = dalloc(m, btc * es), s->dC = dalloc(m, btc * es);
    s->dF = dalloc(m, btf * es), s->dqkv = dalloc(m, 3 * btc * es);
}

static void module_alloc(hg_gpu_model *m, gmodule *g, hg_module_id id, uint64_t seed)
{
    hg_param_table_build(&g->table, id, &m->cfg);
    size_t n = g->table.total;
    g->master = dalloc(m, n * 4), g->grads = dalloc(m, n * 4);
    g->m = dalloc(m, n * 4), g->v = dalloc(m, n * 4);
    g->work = m->dt == KD_F32 ? (char *)g->master : dalloc(m, n * m->es);
    float *host = malloc(n * sizeof(float));
    if (!host) {
        fprintf(stderr, "hg_gpu_model: out of host memory for %zu parameters\n", n);
        exit(EXIT_FAILURE);
    }
    hg_params_init(&g->table, seed, host);
    cuda_check(cudaMemcpy(g->master, host, n * 4, cudaMemcpyHostToDevice));
    free(host);
    if (m->dt != KD_F32)
        convert(g->work, m->dt, g->master, KD_F32, n, m->stream);
}

hg_gpu_model *hg_gpu_model_create(const hg_model_config *cfg, int B, uint64_t seed, kdtype dt)
{
    char err[256];
    if (hg_config_check(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "hg_gpu_model_create: %s\n", err);
        return NULL;
    }
    hg_gpu_model *m = calloc(1, sizeof *m);
    if (!m) {
        fprintf(stderr, "hg_gpu_model_create: out of memory\n");
        return NULL;
    }
    kernels_init();
    cuda_check(cudaStreamCreate(&m->stream));
    m->cfg = *cfg;
    m->B = B, m->dt = dt, m->es = kdtype_size(dt);
    m->P = hg_num_patches(cfg), m->Tt = hg_text_len(cfg), m->T = cfg->seq_length;
    m->C = cfg->hidden_size, m->Ce = cfg->encoder_hidden_size, m->V = cfg->vocab_size;
    m->D = hg_patch_dim(cfg);
    module_alloc(m, &m->enc, HG_MODULE_ENCODER, seed);
    module_alloc(m, &m->llm, HG_MODULE_LLM, seed);
    stack_alloc(m, &m->enc_acts, cfg->encoder_num_layers, m->P, m->Ce, hg_encoder_ffn_size(cfg),
                cfg->encoder_num_attention_heads, 0, 0, 0);
    stack_alloc(m, &m->llm_acts, cfg->num_layers, m->T, m->C, hg_ffn_size(cfg),
                cfg->num_attention_heads, 1, cfg->num_experts, cfg->moe_router_topk);
    size_t bp = (size_t)B * m->P, bt = (size_t)B * m->T, es = m->es;
    m->patches_f32 = dalloc(m, bp * m->D * 4), m->patches = dalloc(m, bp * m->D * es);
    m->tokens = dalloc(m, (size_t)B * m->Tt * 4);
    m->targets = dalloc(m, bt * 4), m->mask = dalloc(m, bt * 4);
    m->enc_lnf = dalloc(m, bp * m->Ce * es), m->denc_lnf = dalloc(m, bp * m->Ce * es);
    m->enc_lnf_mean = dalloc(m, bp * 4), m->enc_lnf_rstd = dalloc(m, bp * 4);
    m->img = dalloc(m, bp * m->C * es), m->text = dalloc(m, (size_t)B * m->Tt * m->C * es);
    m->lnf = dalloc(m, bt * m->C * es);
    m->lnf_mean = dalloc(m, bt * 4), m->lnf_rstd = dalloc(m, bt * 4);
    m->logits = dalloc(m, bt * m->V * es);
    m->losses = dalloc(m, bt * 4), m->norm_sq = dalloc(m, 4);
    m->h_targets = malloc(bt * sizeof(int));
    m->h_mask = malloc(bt * sizeof(float)), m->h_losses = malloc(bt * sizeof(float));
    m->h_aux = calloc(cfg->num_layers, sizeof(float));
    if (!m->h_targets || !m->h_mask || !m->h_losses || !m->h_aux) {
        fprintf(stderr, "hg_gpu_model_create: out of host memory\n");
        exit(EXIT_FAILURE);
    }
    cuda_check(cudaStreamSynchronize(m->stream));
    return m;
}

void hg_gpu_model_free(hg_gpu_model *m)
{
    if (!m)
        return;
    cuda_check(cudaStreamSynchronize(m->stream));
    for (int i = 0; i < m->num_allocs; i++)
        cuda_check(cudaFree(m->allocs[i]));
    cuda_check(cudaStreamDestroy(m->stream));
    kernels_free();
    if (m->llm_acts.moe.E)
        gpu_moe_free_host(&m->llm_acts.moe);
    free(m->h_targets), free(m->h_mask), free(m->h_losses), free(m->h_aux);
    free(m);
}

#define W(g, id) hg_tensor_at(&(g)->table, (g)->work, m->es, (id))
#define G(g, id) ((float *)hg_tensor_at(&(g)->table, (g)->grads, 4, (id)))

static void stack_forward(hg_gpu_model *m, gstack *s, gmodule *g)
{
    int N = s->B * s->T, C = s->C, F = s->F, HD = C / s->NH;
    size_t bt = N, btc = bt * C, btf = bt * F, es = m->es;
    kdtype dt = m->dt;
    cudaStream_t st = m->stream;
    for (int l = 0; l < s->L; l++) {
        hg_block_view w;
        hg_block_view_at(&g->table, g->work, es, l, &w);
        char *x = s->res + l * btc * es, *out = s->res + (l + 1) * btc * es;
        char *ln1 = s->ln1 + l * btc * es, *qkv = s->qkv + l * 3 * btc * es;
        char *att = s->att + l * btc * es, *res2 = s->res2 + l * btc * es;
        char *ln2 = s->ln2 + l * btc * es, *fch = s->fch + l * btf * es;
        char *fchg = s->fch_gelu + l * btf * es;
        layernorm_forward(ln1, s->ln1_mean + l * bt, s->ln1_rstd + l * bt, x, w.ln1_w, w.ln1_b,
                          N, C, dt, st);
        matmul_forward(qkv, ln1, w.qkv_w, w.qkv_b, N, C, 3 * C, dt, st);
        attention_forward(att, s->lse + l * bt * s->NH, qkv, s->B, s->T, s->NH, HD, s->causal,
                          dt, st);
        matmul_forward_residual(res2, att, w.attn_proj_w, w.attn_proj_b, x, N, C, C, dt, st);
        layernorm_forward(ln2, s->ln2_mean + l * bt, s->ln2_rstd + l * bt, res2, w.ln2_w,
                          w.ln2_b, N, C, dt, st);
        if (s->moe.E) {
            gpu_moe_forward(&s->moe, l, &w, ln2, out, st);
            add_forward(out, out, res2, btc, dt, st);
        } else {
            matmul_forward_gelu(fchg, fch, ln2, w.fc_w, w.fc_b, N, C, F, dt, st);
            matmul_forward_residual(out, fchg, w.fc_proj_w, w.fc_proj_b, res2, N, F, C, dt, st);
        }
    }
}

static void stack_backward(hg_gpu_model *m, gstack *s, gmodule *g)
{
    int N = s->B * s->T, C = s->C, F = s->F, HD = C / s->NH;
    size_t bt = N, btc = bt * C, btf = bt * F, es = m->es;
    kdtype dt = m->dt;
    cudaStream_t st = m->stream;
    for (int l = s->L - 1; l >= 0; l--) {
        hg_block_view w, d;
        hg_block_view_at(&g->table, g->work, es, l, &w);
        hg_block_view_at(&g->table, g->grads, 4, l, &d);
        char *x = s->res + l * btc * es;
        char *ln1 = s->ln1 + l * btc * es, *qkv = s->qkv + l * 3 * btc * es;
        char *att = s->att + l * btc * es, *res2 = s->res2 + l * btc * es;
        char *ln2 = s->ln2 + l * btc * es, *fch = s->fch + l * btf * es;
        char *fchg = s->fch_gelu + l * btf * es;
        if (s->moe.E) {
            gpu_moe_backward(&s->moe, l, &w, &d, ln2, s->dres, s->dC, st);
        } else {
            matmul_backward_dgelu(s->dF, d.fc_proj_w, d.fc_proj_b, s->dres, fchg, w.fc_proj_w,
                                  fch, N, F, C, dt, st);
            matmul_backward(s->dC, d.fc_w, d.fc_b, s->dF, ln2, w.fc_w, N, C, F, dt, st);
        }
        layernorm_backward(s->dres, d.ln2_w, d.ln2_b, s->dC, res2, w.ln2_w,
                           s->ln2_mean + l * bt, s->ln2_rstd + l * bt, N, C, dt, st);
        matmul_backward(s->dC, d.attn_proj_w, d.attn_proj_b, s->dres, att, w.attn_proj_w, N, C,
                        C, dt, st);
        attention_backward(s->dqkv, s->dC, qkv, att, s->lse + l * bt * s->NH, s->B, s->T,
                           s->NH, HD, s->causal, dt, st);
        matmul_backward(s->dC, d.qkv_w, d.qkv_b, s->dqkv, ln1, w.qkv_w, N, C, 3 * C, dt, st);
        layernorm_backward(s->dres, d.ln1_w, d.ln1_b, s->dC, x, w.ln1_w, s->ln1_mean + l * bt,
                           s->ln1_rstd + l * bt, N, C, dt, st);
    }
}

// Targets of the LLM's rows (B, T): the caption's next tokens; image rows,
// padding and the last row are masked.
static void upload_batch(hg_gpu_model *m, const float *patches, const int *tokens)
{
    int B = m->B, T = m->T, P = m->P, Tt = m->Tt;
    int *ct = malloc(sizeof(int) * B * Tt);
    if (!ct) {
        fprintf(stderr, "hg_gpu_model: out of host memory\n");
        exit(EXIT_FAILURE);
    }
    hg_caption_targets(tokens, B, Tt, ct);
    m->count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int target = t < P ? -1 : ct[b * Tt + t - P];
            m->h_targets[b * T + t] = target < 0 ? 0 : target;
            m->h_mask[b * T + t] = target < 0 ? 0.0f : 1.0f;
            m->count += target >= 0;
        }
    free(ct);
    size_t np = (size_t)B * P * m->D;
    cudaStream_t st = m->stream;
    cuda_check(cudaMemcpyAsync(m->patches_f32, patches, np * 4, cudaMemcpyHostToDevice, st));
    convert(m->patches, m->dt, m->patches_f32, KD_F32, np, st);
    cuda_check(cudaMemcpyAsync(m->tokens, tokens, sizeof(int) * B * Tt, cudaMemcpyHostToDevice,
                               st));
    cuda_check(cudaMemcpyAsync(m->targets, m->h_targets, sizeof(int) * B * T,
                               cudaMemcpyHostToDevice, st));
    cuda_check(cudaMemcpyAsync(m->mask, m->h_mask, sizeof(float) * B * T,
                               cudaMemcpyHostToDevice, st));
}

float hg_gpu_model_forward_backward(hg_gpu_model *m, const float *patches, const int *tokens)
{
    int B = m->B, P = m->P, Tt = m->Tt, T = m->T, C = m->C, Ce = m->Ce, V = m->V, D = m->D;
    size_t es = m->es;
    kdtype dt = m->dt;
    cudaStream_t st = m->stream;
    gmodule *enc = &m->enc, *llm = &m->llm;
    gstack *e = &m->enc_acts, *s = &m->llm_acts;
    upload_batch(m, patches, tokens);
    cuda_check(cudaMemsetAsync(enc->grads, 0, enc->table.total * 4, st));
    cuda_check(cudaMemsetAsync(llm->grads, 0, llm->table.total * 4, st));

    // Encoder: patch embedding + positions, blocks, final LayerNorm, projection.
    char *enc_out = e->res + (size_t)e->L * B * P * Ce * es;
    matmul_forward(e->res, m->patches, W(enc, HG_ENC_PATCH_W), W(enc, HG_ENC_PATCH_B), B * P, D,
                   Ce, dt, st);
    position_embedding_forward(e->res, e->res, W(enc, HG_ENC_POS), B, P, Ce, dt, st);
    stack_forward(m, e, enc);
    layernorm_forward(m->enc_lnf, m->enc_lnf_mean, m->enc_lnf_rstd, enc_out,
                      W(enc, HG_ENC_LNF_W), W(enc, HG_ENC_LNF_B), B * P, Ce, dt, st);
    matmul_forward(m->img, m->enc_lnf, W(enc, HG_ENC_PROJ_W), W(enc, HG_ENC_PROJ_B), B * P, Ce,
                   C, dt, st);

    // LLM input rows: image embeddings at [0, P), caption tokens after.
    char *wte = W(llm, HG_LLM_WTE), *wpe = W(llm, HG_LLM_WPE);
    size_t row = (size_t)C * es;
    position_embedding_forward(m->img, m->img, wpe, B, P, C, dt, st);
    embedding_forward(m->text, m->tokens, wte, wpe + P * row, B, Tt, C, V, dt, st);
    cuda_check(cudaMemcpy2DAsync(s->res, T * row, m->img, P * row, P * row, B,
                                 cudaMemcpyDeviceToDevice, st));
    cuda_check(cudaMemcpy2DAsync(s->res + P * row, T * row, m->text, Tt * row, Tt * row, B,
                                 cudaMemcpyDeviceToDevice, st));
    stack_forward(m, s, llm);
    char *llm_out = s->res + (size_t)s->L * B * T * row;
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, llm_out, W(llm, HG_LLM_LNF_W),
                      W(llm, HG_LLM_LNF_B), B * T, C, dt, st);
    matmul_forward(m->logits, m->lnf, wte, NULL, B * T, C, V, dt, st);
    crossentropy_forward_backward(m->logits, m->losses, m->targets, m->mask, 1.0f / m->count,
                                  B * T, V, V, 1, dt, st);
    cuda_check(cudaMemcpyAsync(m->h_losses, m->losses, sizeof(float) * B * T,
                               cudaMemcpyDeviceToHost, st));
    if (s->moe.E)
        cuda_check(cudaMemcpyAsync(m->h_aux, s->moe.aux, sizeof(float) * s->L,
                                   cudaMemcpyDeviceToHost, st));

    // Backward: LM head (the logits now hold their gradient), final LayerNorm.
    matmul_backward(s->dC, G(llm, HG_LLM_WTE), NULL, m->logits, m->lnf, wte, B * T, C, V, dt, st);
    cuda_check(cudaMemsetAsync(s->dres, 0, (size_t)B * T * row, st));
    layernorm_backward(s->dres, G(llm, HG_LLM_LNF_W), G(llm, HG_LLM_LNF_B), s->dC, llm_out,
                       W(llm, HG_LLM_LNF_W), m->lnf_mean, m->lnf_rstd, B * T, C, dt, st);
    stack_backward(m, s, llm);

    // Split the input rows' gradient; the image part flows into the encoder.
    char *dimg = m->img, *dtext = m->text; // their forward values are spent
    cuda_check(cudaMemcpy2DAsync(dimg, P * row, s->dres, T * row, P * row, B,
                                 cudaMemcpyDeviceToDevice, st));
    cuda_check(cudaMemcpy2DAsync(dtext, Tt * row, s->dres + P * row, T * row, Tt * row, B,
                                 cudaMemcpyDeviceToDevice, st));
    float *dwpe = G(llm, HG_LLM_WPE);
    embedding_backward(G(llm, HG_LLM_WTE), dwpe + (size_t)P * C, dtext, m->tokens, B, Tt, C, V,
                       dt, st);
    position_embedding_backward(dwpe, dimg, B, P, C, dt, st);

    matmul_backward(m->denc_lnf, G(enc, HG_ENC_PROJ_W), G(enc, HG_ENC_PROJ_B), dimg, m->enc_lnf,
                    W(enc, HG_ENC_PROJ_W), B * P, Ce, C, dt, st);
    cuda_check(cudaMemsetAsync(e->dres, 0, (size_t)B * P * Ce * es, st));
    layernorm_backward(e->dres, G(enc, HG_ENC_LNF_W), G(enc, HG_ENC_LNF_B), m->denc_lnf, enc_out,
                       W(enc, HG_ENC_LNF_W), m->enc_lnf_mean, m->enc_lnf_rstd, B * P, Ce, dt, st);
    stack_backward(m, e, enc);
    position_embedding_backward(G(enc, HG_ENC_POS), e->dres, B, P, Ce, dt, st);
    matmul_backward(NULL, G(enc, HG_ENC_PATCH_W), G(enc, HG_ENC_PATCH_B), e->dres, m->patches,
                    W(enc, HG_ENC_PATCH_W), B * P, D, Ce, dt, st);

    cuda_check(cudaStreamSynchronize(st));
    double sum = 0;
    for (int i = 0; i < B * T; i++)
        sum += m->h_losses[i];
    m->aux_loss = 0;
    for (int l = 0; l < s->L && s->moe.E; l++)
        m->aux_loss += m->h_aux[l];
    return (float)(sum / m->count);
}

float hg_gpu_model_aux_loss(const hg_gpu_model *m) { return m->aux_loss; }

void hg_gpu_model_routing(const hg_gpu_model *m, int *topk)
{
    const gpu_moe *moe = &m->llm_acts.moe;
    cuda_check(cudaStreamSynchronize(m->stream));
    cuda_check(cudaMemcpy(topk, moe->topk, sizeof(int) * moe->L * moe->N * moe->K,
                          cudaMemcpyDeviceToHost));
}

static void adamw_module(hg_gpu_model *m, gmodule *g, const hg_optim_config *o, float scale)
{
    for (int id = 0; id < g->table.num_tensors; id++) {
        const hg_tensor_info *ti = &g->table.tensors[id];
        size_t off = ti->offset;
        void *work = m->dt == KD_F32 ? NULL : g->work + off * m->es;
        adamw_step(g->master + off, work, g->grads + off, g->m + off, g->v + off, ti->count,
                   o->lr, o->beta1, o->beta2, o->eps, ti->decay ? o->weight_decay : 0, scale,
                   m->step, m->dt, m->stream);
    }
}

float hg_gpu_model_step(hg_gpu_model *m, const hg_optim_config *o)
{
    float sq;
    cuda_check(cudaMemsetAsync(m->norm_sq, 0, 4, m->stream));
    global_norm_squared(m->norm_sq, m->enc.grads, m->enc.table.total, m->stream);
    global_norm_squared(m->norm_sq, m->llm.grads, m->llm.table.total, m->stream);
    cuda_check(cudaMemcpyAsync(&sq, m->norm_sq, 4, cudaMemcpyDeviceToHost, m->stream));
    cuda_check(cudaStreamSynchronize(m->stream));
    float norm = sqrtf(sq), scale = hg_clip_scale(o, norm);
    m->step++;
    adamw_module(m, &m->enc, o, scale);
    adamw_module(m, &m->llm, o, scale);
    cuda_check(cudaStreamSynchronize(m->stream));
    return norm;
}

const hg_param_table *hg_gpu_model_table(const hg_gpu_model *m, hg_module_id module)
{
    return module == HG_MODULE_ENCODER ? &m->enc.table : &m->llm.table;
}

void hg_gpu_model_copy_out(const hg_gpu_model *m, hg_module_id module, float *params,
                           float *grads)
{
    const gmodule *g = module == HG_MODULE_ENCODER ? &m->enc : &m->llm;
    size_t bytes = g->table.total * 4;
    cuda_check(cudaStreamSynchronize(m->stream));
    if (params)
        cuda_check(cudaMemcpy(params, g->master, bytes, cudaMemcpyDeviceToHost));
    if (grads)
        cuda_check(cudaMemcpy(grads, g->grads, bytes, cudaMemcpyDeviceToHost));
}
