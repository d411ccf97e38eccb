// A micro-batch's synthetic samples for the stages: made when needed, or
// taken from those made ahead.
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/data.h"
#include "train/worker_impl.h"

static int holds(const tr_worker *w, int mb)
{
    const tr_samples *x = w->ahead;
    return x && x->valid && w->encoder <= 0 && x->B == w->B && x->seed == w->data_seed &&
           x->first == tr_first_sample(w, mb);
}

const float *tr_patches(tr_worker *w, int mb)
{
    if (holds(w, mb))
        return w->ahead->patches;
    if (w->encoder > 0)
        hg_encoder_images(w->data_seed, w->encoder, tr_first_sample(w, mb), w->B, w->S,
                          w->images);
    else
        hg_batch(w->data_seed, tr_first_sample(w, mb), w->B, w->S, w->Tt, w->images, w->tokens);
    hg_patchify(w->images, w->B, w->S, w->plan.spec.model.patch_size, w->h_patches);
    return w->h_patches;
}

void tr_tokens(tr_worker *w, int mb, int *tokens)
{
    if (holds(w, mb))
        memcpy(tokens, w->ahead->tokens, sizeof(int) * w->B * w->Tt);
    else
        hg_batch(w->data_seed, tr_first_sample(w, mb), w->B, w->S, w->Tt, w->images, tokens);
}

int tr_samples_alloc(tr_samples *x, const hg_model_config *m, int B)
{
    size_t pixels = (size_t)B * m->image_size * m->image_size * 3;
    memset(x, 0, sizeof *x);
    x->B = B;
    x->images = malloc(sizeof(float) * pixels);
    x->patches = malloc(sizeof(float) * pixels); // patches hold the same pixels
    x->tokens = malloc(sizeof(int) * ((size_t)B * hg_text_len(m) + 1));
    return x->images && x->patches && x->tokens ? 0 : -1;
}

void tr_samples_make(tr_samples *x, const hg_model_config *m, uint64_t seed, uint64_t first)
{
    hg_batch(seed, first, x->B, m->image_size, hg_text_len(m), x->images, x->tokens);
    hg_patchify(x->images, x->B, m->image_size, m->patch_size, x->patches);
    x->seed = seed, x->first = first, x->valid = 1;
}

void tr_samples_free(tr_samples *x)
{
    free(x->images), free(x->patches), free(x->tokens);
    memset(x, 0, sizeof *x);
}
