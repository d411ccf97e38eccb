// Synthetic image-caption samples, their patches and targets, and the
// text-only floor.
#include "model/data.h"

#include "layout/layout.h"
#include "model/rng.h"

#include <math.h>
#include <string.h>

static double uniform(uint64_t seed, uint64_t index, uint64_t stream)
{
    return hg_unit(hg_draw(seed, index, stream));
}

enum { STREAM_COLOUR, STREAM_SHAPE, STREAM_ROW, STREAM_COL, STREAM_BG, STREAM_JX, STREAM_JY,
       STREAM_RADIUS, STREAM_PIXEL };

void hg_scene_of(uint64_t seed, uint64_t index, hg_scene *scene)
{
    scene->colour = (int)(hg_draw(seed, index, STREAM_COLOUR) % HG_NUM_COLOURS);
    scene->shape = (int)(hg_draw(seed, index, STREAM_SHAPE) % HG_NUM_SHAPES);
    scene->row = (int)(hg_draw(seed, index, STREAM_ROW) % 3);
    scene->col = (int)(hg_draw(seed, index, STREAM_COL) % 3);
}

static const float palette[HG_NUM_COLOURS][3] = {
    {1, 0, 0}, {0, 1, 0}, {0, 0.3f, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}, {1, 0.5f, 0},
};

// Whether offset (dx, dy) from the centre lies inside a shape of radius r.
static int inside(int shape, double dx, double dy, double r)
{
    double ax = fabs(dx), ay = fabs(dy);
    switch (shape) {
    case 0: return ax <= r && ay <= r;                   // square
    case 1: return dx * dx + dy * dy <= r * r;           // circle
    case 2: return ay <= r && ax <= (dy + r) * 0.5;      // triangle, apex up
    default: return (ax <= r / 3 && ay <= r) || (ay <= r / 3 && ax <= r); // cross
    }
}

void hg_render(uint64_t seed, uint64_t index, const hg_scene *scene, int size, float *image)
{
    double cell = size / 3.0;
    double cx = (scene->col + 0.5 + 0.2 * (uniform(seed, index, STREAM_JX) - 0.5)) * cell;
    double cy = (scene->row + 0.5 + 0.2 * (uniform(seed, index, STREAM_JY) - 0.5)) * cell;
    double r = cell * (0.3 + 0.12 * uniform(seed, index, STREAM_RADIUS));
    double bg = 0.05 + 0.2 * uniform(seed, index, STREAM_BG); // bg + noise stays in [0, 0.3]
    const float *fg = palette[scene->colour];
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int in = inside(scene->shape, x + 0.5 - cx, y + 0.5 - cy, r);
            uint64_t px = STREAM_PIXEL + (uint64_t)y * size + x;
            double noise = 0.1 * (uniform(seed, index, px) - 0.5);
            for (int c = 0; c < 3; c++) {
                double v = in ? fg[c] : bg + noise; // in [0, 1]
                image[((size_t)y * size + x) * 3 + c] = (float)(2 * v - 1);
            }
        }
}

int hg_caption(const hg_scene *scene, int *tokens, int len)
{
    int n = 0;
    tokens[n++] = HG_TOK_BOS;
    tokens[n++] = HG_TOK_COLOUR0 + scene->colour;
    tokens[n++] = HG_TOK_SHAPE0 + scene->shape;
    tokens[n++] = HG_TOK_AT;
    if (scene->row == 1 && scene->col == 1) {
        tokens[n++] = HG_TOK_CENTER;
    } else {
        tokens[n++] = HG_TOK_TOP + scene->row;
        tokens[n++] = HG_TOK_LEFT + scene->col;
    }
    tokens[n++] = HG_TOK_EOS;
    for (int i = n; i < len; i++)
        tokens[i] = HG_TOK_PAD;
    return n;
}

void hg_batch(uint64_t seed, uint64_t first_index, int B, int size, int text_len, float *images,
              int *tokens)
{
    for (int b = 0; b < B; b++) {
        hg_scene s;
        hg_scene_of(seed, first_index + b, &s);
        hg_render(seed, first_index + b, &s, size, images + (size_t)b * size * size * 3);
        hg_caption(&s, tokens + (size_t)b * text_len, text_len);
    }
}

void hg_encoder_images(uint64_t seed, int encoder, uint64_t first_index, int B, int size,
                       float *images)
{
    for (int b = 0; b < B; b++) {
        hg_scene s;
        hg_scene_of(seed, first_index + b, &s);
        hg_render(hg_encoder_seed(seed, encoder), first_index + b, &s, size,
                  images + (size_t)b * size * size * 3);
    }
}

void hg_patchify(const float *images, int B, int S, int p, float *patches)
{
    int side = S / p;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < side; py++)
            for (int px = 0; px < side; px++)
                for (int y = 0; y < p; y++) {
                    const float *src = images + (((size_t)b * S + py * p + y) * S + px * p) * 3;
                    float *dst = patches + (((size_t)b * side + py) * side + px) * p * p * 3 +
                                 (size_t)y * p * 3;
                    memcpy(dst, src, sizeof(float) * p * 3);
                }
}

void hg_caption_targets(const int *tokens, int B, int text_len, int *targets)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < text_len; t++) {
            int next = t + 1 < text_len ? tokens[b * text_len + t + 1] : HG_TOK_PAD;
            targets[b * text_len + t] = next == HG_TOK_PAD ? -1 : next;
        }
}

// Enumerates every scene (all equally likely): for each target token, the
// best text-only prediction is the empirical next-token distribution given
// the prefix, so the floor is E[sum of -log p(token | prefix)] / E[#targets].
double hg_text_only_floor(void)
{
    enum { N = HG_NUM_COLOURS * HG_NUM_SHAPES * 9 };
    static int caps[N][HG_MAX_CAPTION];
    int lens[N];
    for (int i = 0; i < N; i++) {
        hg_scene s = {.colour = i / (HG_NUM_SHAPES * 9), .shape = i / 9 % HG_NUM_SHAPES,
                      .row = i % 9 / 3, .col = i % 3};
        lens[i] = hg_caption(&s, caps[i], HG_MAX_CAPTION);
    }
    double nll = 0, targets = 0;
    for (int i = 0; i < N; i++)
        for (int t = 1; t < lens[i]; t++) {
            int with_prefix = 0, with_token = 0;
            for (int j = 0; j < N; j++) {
                if (lens[j] <= t || memcmp(caps[j], caps[i], sizeof(int) * t) != 0)
                    continue;
                with_prefix++;
                with_token += caps[j][t] == caps[i][t];
            }
            nll -= log((double)with_token / with_prefix);
            targets += 1;
        }
    return nll / targets;
}

_Static_assert(HG_DATA_VOCAB == HG_MIN_VOCAB, "layout.h's HG_MIN_VOCAB is the caption vocabulary");

static const char *const words[HG_DATA_VOCAB] = {
    "<pad>", "<bos>", "<eos>", "red", "green", "blue", "yellow", "magenta", "cyan", "white",
    "orange", "square", "circle", "triangle", "cross", "at", "top", "middle", "bottom",
    "left", "center", "right",
};

const char *hg_token_word(int token)
{
    return token >= 0 && token < HG_DATA_VOCAB ? words[token] : "?";
}
