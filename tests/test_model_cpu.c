// The fp32 CPU model: loss at init near log(vocab), every tensor's gradient
// against central finite differences (along a random direction over the
// whole tensor, and at its largest-gradient element), and AdamW steps
// lowering the loss on a fixed batch.
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "model/rng.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2 };

// |fd - analytic| <= ATOL + RTOL |analytic|; worst tracks the largest share
// of that bound any check used, printed to show the margin.
#define ATOL 5e-5
#define RTOL 5e-3
static double worst;

static int close_enough(double fd, double an)
{
    double used = fabs(fd - an) / (ATOL + RTOL * fabs(an));
    worst = used > worst ? used : worst;
    return used <= 1;
}

// Checks one module's tensors: for each, the directional derivative along
// a random +-1 direction, and the partial derivative at its largest |grad|.
static void check_module(hg_cpu_model *m, const hg_param_table *t, float *params,
                         const float *grads, const float *patches, const int *tokens)
{
    const float h = 1e-2f;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        float *p = params + ti->offset;
        const float *g = grads + ti->offset;
        float *saved = malloc(sizeof(float) * ti->count);
        memcpy(saved, p, sizeof(float) * ti->count);

        double analytic = 0, dnorm = 0;
        for (size_t i = 0; i < ti->count; i++) {
            float d = (hg_draw(99, id, i) & 1) ? 1.0f : -1.0f;
            analytic += d * g[i];
            dnorm += 1;
        }
        float step = h / (float)sqrt(dnorm); // unit-length direction times h
        for (size_t i = 0; i < ti->count; i++)
            p[i] = saved[i] + ((hg_draw(99, id, i) & 1) ? step : -step);
        float lp = hg_cpu_model_forward(m, patches, tokens);
        for (size_t i = 0; i < ti->count; i++)
            p[i] = saved[i] - ((hg_draw(99, id, i) & 1) ? step : -step);
        float lm = hg_cpu_model_forward(m, patches, tokens);
        memcpy(p, saved, sizeof(float) * ti->count);
        double fd = (lp - lm) / (2.0 * h), an = analytic / sqrt(dnorm);
        CHECK(close_enough(fd, an),
              "%s %s: directional fd %.6g, analytic %.6g", hg_module_name(t->module), ti->name,
              fd, an);

        size_t imax = 0;
        for (size_t i = 0; i < ti->count; i++)
            if (fabsf(g[i]) > fabsf(g[imax]))
                imax = i;
        p[imax] = saved[imax] + h;
        lp = hg_cpu_model_forward(m, patches, tokens);
        p[imax] = saved[imax] - h;
        lm = hg_cpu_model_forward(m, patches, tokens);
        p[imax] = saved[imax];
        fd = (lp - lm) / (2.0 * h);
        CHECK(close_enough(fd, g[imax]),
              "%s %s[%zu]: fd %.6g, analytic %.6g", hg_module_name(t->module), ti->name, imax,
              fd, g[imax]);
        free(saved);
    }
}

int main(void)
{
    // tiny with a shorter caption, to keep the sanitizer run short.
    hg_model_config tiny = hg_config_find("tiny")->model;
    tiny.seq_length = 32;
    const hg_model_config *cfg = &tiny;
    int P = hg_num_patches(cfg), S = cfg->image_size, Tt = hg_text_len(cfg);
    float *images = malloc(sizeof(float) * B * S * S * 3);
    float *patches = malloc(sizeof(float) * B * P * hg_patch_dim(cfg));
    int *tokens = malloc(sizeof(int) * B * Tt);
    hg_batch(5, 0, B, S, Tt, images, tokens);
    hg_patchify(images, B, S, cfg->patch_size, patches);

    hg_cpu_model *m = hg_cpu_model_create(cfg, B, 1234);
    CHECK(m != NULL, "model not created");
    if (!m)
        return check_summary("test_model_cpu");
    float loss = hg_cpu_model_forward(m, patches, tokens);
    // Small random logits: near the uniform prediction's loss.
    CHECK(fabsf(loss - logf((float)cfg->vocab_size)) < 0.2f, "loss at init %.4f, log(V) %.4f",
          loss, logf((float)cfg->vocab_size));
    // Same weights and batch, same loss to the bit.
    CHECK(hg_cpu_model_forward(m, patches, tokens) == loss, "forward not deterministic");

    hg_cpu_model_backward(m);
    float *enc_g = malloc(sizeof(float) * m->enc_table.total);
    float *llm_g = malloc(sizeof(float) * m->llm_table.total);
    memcpy(enc_g, m->enc_grads, sizeof(float) * m->enc_table.total);
    memcpy(llm_g, m->llm_grads, sizeof(float) * m->llm_table.total);
    check_module(m, &m->enc_table, m->enc_params, enc_g, patches, tokens);
    check_module(m, &m->llm_table, m->llm_params, llm_g, patches, tokens);
    printf("finite differences: worst check used %.0f%% of its tolerance\n", 100 * worst);

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
    CHECK(last < first - 1.0f, "10 steps: loss %.4f -> %.4f", first, last);
    printf("loss at init %.4f (log V %.4f), after 10 steps %.4f\n", first,
           logf((float)cfg->vocab_size), last);

    free(enc_g), free(llm_g), free(images), free(patches), free(tokens);
    hg_cpu_model_free(m);
    return check_summary("test_model_cpu");
}
