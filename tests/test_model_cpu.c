// The fp32 CPU model, dense (tiny) and MoE (tiny-moe): loss at init near
// log(vocab), every tensor's gradient against central finite differences
// (along a random direction over the whole tensor, and at its
// largest-gradient element), and AdamW steps lowering the loss on a fixed
// batch.
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "model/rng.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2 };

// |fd - analytic| <= NOISE / h + RTOL |analytic|: NOISE covers a few ulps of
// an fp32 loss near 5 in each of the two evaluations (the difference's
// rounding floor). worst tracks the largest share of the bound any check
// used, printed to show the margin.
#define NOISE 2e-6
#define RTOL 5e-3
static double worst;

static int close_enough(double fd, double an, double h)
{
    double used = fabs(fd - an) / (NOISE / h + RTOL * fabs(an));
    worst = used > worst ? used : worst;
    return used <= 1;
}

// The loss the gradients belong to: caption cross-entropy plus the MoE
// load-balancing loss.
static float total_loss(hg_cpu_model *m, const float *patches, const int *tokens)
{
    float ce = hg_cpu_model_forward(m, patches, tokens);
    return ce + m->aux_loss;
}

// Central difference of the loss along dir (n elements of p) with step h.
// Where the step moves a token to other experts the loss has a kink there:
// the step shrinks until both sides keep routing (the unperturbed model's
// fingerprint); returns 0 with *fd and the step used set, or -1 if it never held.
static int central_difference(hg_cpu_model *m, float *p, const float *dir, size_t n, float h,
                              uint64_t routing, const float *patches, const int *tokens,
                              double *fd, double *step)
{
    float *saved = malloc(sizeof(float) * n);
    memcpy(saved, p, sizeof(float) * n);
    int rc = -1;
    for (int tries = 0; tries < 4 && rc != 0; tries++, h /= 4) {
        for (size_t i = 0; i < n; i++)
            p[i] = saved[i] + h * dir[i];
        float lp = total_loss(m, patches, tokens);
        uint64_t rp = m->routing;
        for (size_t i = 0; i < n; i++)
            p[i] = saved[i] - h * dir[i];
        float lm = total_loss(m, patches, tokens);
        if (rp == routing && m->routing == routing) {
            *fd = (lp - lm) / (2.0 * h);
            *step = h;
            rc = 0;
        }
    }
    memcpy(p, saved, sizeof(float) * n);
    free(saved);
    return rc;
}

// Checks one module's tensors: for each, the directional derivative along
// a random unit direction of +-1 entries, and the partial derivative at its
// largest |grad|. Returns how many checks found no step that keeps the routing.
static int check_module(hg_cpu_model *m, const hg_param_table *t, float *params,
                        const float *grads, uint64_t routing, const float *patches,
                        const int *tokens)
{
    const float h = 1e-2f;
    int kinks = 0;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        if (ti->count == 0) // the router of a dense model
            continue;
        float *p = params + ti->offset;
        const float *g = grads + ti->offset;
        float *dir = malloc(sizeof(float) * ti->count);
        double analytic = 0, fd, step;
        for (size_t i = 0; i < ti->count; i++) {
            dir[i] = ((hg_draw(99, id, i) & 1) ? 1.0f : -1.0f) / sqrtf((float)ti->count);
            analytic += dir[i] * g[i];
        }
        if (central_difference(m, p, dir, ti->count, h, routing, patches, tokens, &fd, &step) == 0)
            CHECK(close_enough(fd, analytic, step), "%s %s: directional fd %.6g, analytic %.6g",
                  hg_module_name(t->module), ti->name, fd, analytic);
        else
            kinks++;

        size_t imax = 0;
        for (size_t i = 0; i < ti->count; i++)
            if (fabsf(g[i]) > fabsf(g[imax]))
                imax = i;
        float one = 1.0f;
        if (central_difference(m, p + imax, &one, 1, h, routing, patches, tokens, &fd, &step) == 0)
            CHECK(close_enough(fd, g[imax], step), "%s %s[%zu]: fd %.6g, analytic %.6g",
                  hg_module_name(t->module), ti->name, imax, fd, g[imax]);
        else
            kinks++;
        free(dir);
    }
    return kinks;
}

static void check_config(const char *name)
{
    // A shorter caption, to keep the sanitizer run short.
    hg_model_config shorter = hg_config_find(name)->model;
    shorter.seq_length = 24; // 16 patches, then 8 caption positions
    const hg_model_config *cfg = &shorter;
    worst = 0;
    int P = hg_num_patches(cfg), S = cfg->image_size, Tt = hg_text_len(cfg);
    float *images = malloc(sizeof(float) * B * S * S * 3);
    float *patches = malloc(sizeof(float) * B * P * hg_patch_dim(cfg));
    int *tokens = malloc(sizeof(int) * B * Tt);
    hg_batch(5, 0, B, S, Tt, images, tokens);
    hg_patchify(images, B, S, cfg->patch_size, patches);

    hg_cpu_model *m = hg_cpu_model_create(cfg, B, 1234);
    CHECK(m != NULL, "%s: model not created", name);
    if (!m)
        return;
    float loss = hg_cpu_model_forward(m, patches, tokens);
    uint64_t routing = m->routing; // every check below restores the weights it moves
    // Small random logits: near the uniform prediction's loss.
    CHECK(fabsf(loss - logf((float)cfg->vocab_size)) < 0.2f, "loss at init %.4f, log(V) %.4f",
          loss, logf((float)cfg->vocab_size));
    // Same weights and batch, same loss to the bit.
    CHECK(hg_cpu_model_forward(m, patches, tokens) == loss && m->routing == routing,
          "forward not deterministic");

    hg_cpu_model_backward(m);
    float *enc_g = malloc(sizeof(float) * m->enc_table.total);
    float *llm_g = malloc(sizeof(float) * m->llm_table.total);
    memcpy(enc_g, m->enc_grads, sizeof(float) * m->enc_table.total);
    memcpy(llm_g, m->llm_grads, sizeof(float) * m->llm_table.total);
    int kinks = check_module(m, &m->enc_table, m->enc_params, enc_g, routing, patches, tokens) +
                check_module(m, &m->llm_table, m->llm_params, llm_g, routing, patches, tokens);
    // Dense models have no kinks; an MoE may sit on a few routing switches.
    CHECK(kinks <= (cfg->num_experts ? 2 : 0), "%s: %d checks found no smooth step", name,
          kinks);
    printf("%s: finite differences: worst check used %.0f%% of its tolerance, %d at kinks\n",
           name, 100 * worst, kinks);
    if (cfg->num_experts)
        CHECK(m->aux_loss > 0 && m->aux_loss < 2 * HG_MOE_AUX_COEFF * cfg->num_layers,
              "%s: load-balancing loss %g", name, m->aux_loss);

    // Ten AdamW steps on the same batch lower its loss well below the start.
    hg_optim_config opt;
    hg_optim_defaults(&opt);
    float first = 0, last = 0;
    for (int step = 0; step < 10; step++) {
        last = hg_cpu_model_forward(m, patches, tokens);
        if (step == 0)
            first = last;
        hg_cpu_model_backward(m);
        float norm = hg_cpu_model_step(m, &opt);
        CHECK(isfinite(norm) && norm > 0, "step %d grad norm %g", step, norm);
    }
    CHECK(last < first - 1.0f, "%s: 10 steps: loss %.4f -> %.4f", name, first, last);
    printf("%s: loss at init %.4f (log V %.4f), after 10 steps %.4f\n", name, first,
           logf((float)cfg->vocab_size), last);

    free(enc_g), free(llm_g), free(images), free(patches), free(tokens);
    hg_cpu_model_free(m);
}

int main(void)
{
    check_config("tiny");
    check_config("tiny-moe");
    return check_summary("test_model_cpu");
}
