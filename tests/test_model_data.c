// Synthetic data: determinism, value ranges, captions matching the scene
// and the image, patch order, targets, and the text-only floor.
#include "model/config.h"
#include "model/data.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { S = 24, TEXT = 10 };

static void test_determinism(void)
{
    static float a[4 * S * S * 3], b[4 * S * S * 3];
    int ta[4 * TEXT], tb[4 * TEXT];
    hg_batch(7, 100, 4, S, TEXT, a, ta);
    hg_batch(7, 100, 4, S, TEXT, b, tb);
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(ta, tb, sizeof ta) == 0, "same key, other data");
    // Sample 101 alone equals the batch's second sample: keyed by index.
    hg_batch(7, 101, 1, S, TEXT, b, tb);
    CHECK(memcmp(a + S * S * 3, b, sizeof(float) * S * S * 3) == 0, "sample depends on batch");
    CHECK(memcmp(ta + TEXT, tb, sizeof(int) * TEXT) == 0, "caption depends on batch");
    hg_batch(8, 100, 1, S, TEXT, b, tb);
    CHECK(memcmp(a, b, sizeof(float) * S * S * 3) != 0, "seed 8 drew seed 7's image");
}

// Attributes are uniform: over 9000 samples each value's share is near its
// probability, and values range over exactly their sets.
static void test_distribution(void)
{
    int colours[HG_NUM_COLOURS] = {0}, shapes[HG_NUM_SHAPES] = {0}, cells[9] = {0};
    enum { N = 9000 };
    for (int i = 0; i < N; i++) {
        hg_scene s;
        hg_scene_of(1, i, &s);
        CHECK(s.colour >= 0 && s.colour < HG_NUM_COLOURS && s.shape >= 0 &&
                  s.shape < HG_NUM_SHAPES && s.row >= 0 && s.row < 3 && s.col >= 0 && s.col < 3,
              "sample %d out of range", i);
        colours[s.colour]++, shapes[s.shape]++, cells[s.row * 3 + s.col]++;
    }
    for (int c = 0; c < HG_NUM_COLOURS; c++)
        CHECK(abs(colours[c] - N / HG_NUM_COLOURS) < 120, "colour %d drawn %d times", c,
              colours[c]);
    for (int c = 0; c < HG_NUM_SHAPES; c++)
        CHECK(abs(shapes[c] - N / HG_NUM_SHAPES) < 150, "shape %d drawn %d times", c, shapes[c]);
    for (int c = 0; c < 9; c++)
        CHECK(abs(cells[c] - N / 9) < 100, "cell %d drawn %d times", c, cells[c]);
}

// The caption decodes back to the scene; the image's shape pixels have the
// caption's colour and their centroid lies in the caption's cell.
static void test_consistency(void)
{
    static const float rgb[HG_NUM_COLOURS][3] = {
        {1, 0, 0}, {0, 1, 0}, {0, 0.3f, 1}, {1, 1, 0},
        {1, 0, 1}, {0, 1, 1}, {1, 1, 1}, {1, 0.5f, 0},
    };
    static float img[S * S * 3];
    for (int i = 0; i < 300; i++) {
        hg_scene s;
        int tok[TEXT];
        hg_scene_of(3, i, &s);
        hg_render(3, i, &s, S, img);
        int n = hg_caption(&s, tok, TEXT);
        CHECK(tok[0] == HG_TOK_BOS && tok[n - 1] == HG_TOK_EOS && n <= HG_MAX_CAPTION,
              "caption %d framing", i);
        CHECK_EQ(tok[1], HG_TOK_COLOUR0 + s.colour);
        CHECK_EQ(tok[2], HG_TOK_SHAPE0 + s.shape);
        CHECK_EQ(tok[3], HG_TOK_AT);
        if (s.row == 1 && s.col == 1) {
            CHECK(n == 6 && tok[4] == HG_TOK_CENTER, "middle cell reads '%s'",
                  hg_token_word(tok[4]));
        } else {
            CHECK(n == 7 && tok[4] == HG_TOK_TOP + s.row && tok[5] == HG_TOK_LEFT + s.col,
                  "cell (%d,%d) reads '%s %s'", s.row, s.col, hg_token_word(tok[4]),
                  hg_token_word(tok[5]));
        }
        for (int t = n; t < TEXT; t++)
            CHECK_EQ(tok[t], HG_TOK_PAD);
        double sx = 0, sy = 0;
        int count = 0, in_range = 1;
        for (int p = 0; p < S * S; p++) {
            const float *v = img + p * 3;
            for (int c = 0; c < 3; c++)
                in_range &= v[c] >= -1 && v[c] <= 1;
            if (v[0] == 2 * rgb[s.colour][0] - 1 && v[1] == 2 * rgb[s.colour][1] - 1 &&
                v[2] == 2 * rgb[s.colour][2] - 1)
                sx += p % S + 0.5, sy += p / S + 0.5, count++;
        }
        CHECK(in_range, "image %d has values outside [-1, 1]", i);
        CHECK(count >= 4, "image %d: only %d pixels of the caption's colour", i, count);
        int col = (int)(sx / count / (S / 3.0)), row = (int)(sy / count / (S / 3.0));
        CHECK(row == s.row && col == s.col,
              "image %d: shape centroid in cell (%d,%d), caption (%d,%d)", i, row, col, s.row,
              s.col);
    }
    CHECK(strcmp(hg_token_word(HG_TOK_COLOUR0), "red") == 0 &&
              strcmp(hg_token_word(HG_TOK_RIGHT), "right") == 0 &&
              strcmp(hg_token_word(HG_DATA_VOCAB), "?") == 0,
          "token words misaligned");
}

static void test_patchify_targets(void)
{
    enum { B = 2, P = 4, SIDE = S / P };
    static float img[B * S * S * 3], patches[B * S * S * 3];
    for (int i = 0; i < B * S * S * 3; i++)
        img[i] = (float)i;
    hg_patchify(img, B, S, P, patches);
    // Element (b, patch (py,px), pixel (y,x), channel c).
    int b = 1, py = 2, px = 5, y = 3, x = 1, c = 2;
    float want = img[(((size_t)b * S + py * P + y) * S + px * P + x) * 3 + c];
    size_t patch = (size_t)b * SIDE * SIDE + py * SIDE + px;
    float got = patches[patch * P * P * 3 + (y * P + x) * 3 + c];
    CHECK(got == want, "patch element %g, expected %g", got, want);

    int tok[2 * 8] = {1, 3, 11, 15, 20, 2, 0, 0, 1, 4, 12, 15, 16, 21, 2, 0};
    int tgt[2 * 8];
    int want_t[2 * 8] = {3, 11, 15, 20, 2, -1, -1, -1, 4, 12, 15, 16, 21, 2, -1, -1};
    hg_caption_targets(tok, 2, 8, tgt);
    CHECK(memcmp(tgt, want_t, sizeof tgt) == 0, "targets differ");
}

// By hand: colour, shape and cell are uniform and independent, so a whole
// caption carries log(8 * 4 * 9) nats the text cannot predict; the middle
// cell's caption has 5 targets, the others 6, so E[#targets] = 6 - 1/9.
static void test_floor(void)
{
    double want = log(8.0 * 4 * 9) / (6 - 1.0 / 9);
    double got = hg_text_only_floor();
    CHECK(fabs(got - want) < 1e-12, "floor %.15f, expected %.15f", got, want);
    CHECK(fabs(got - 0.961635) < 1e-6, "floor %.6f", got);
}

static void test_configs(void)
{
    char err[256];
    const char *names[] = {"tiny", "tiny-moe", "small", "small-moe", "1b"};
    for (int i = 0; i < 5; i++) {
        const hg_config *c = hg_config_find(names[i]);
        CHECK(c != NULL, "no config %s", names[i]);
        if (c)
            CHECK(hg_config_check(&c->model, err, sizeof err) == 0, "%s: %s", names[i], err);
    }
    CHECK(hg_config_find("huge") == NULL, "unknown config found");
    const hg_model_config *t = &hg_config_find("tiny")->model;
    CHECK_EQ(hg_num_patches(t), 16);
    CHECK_EQ(hg_text_len(t), 48);
    CHECK_EQ(hg_patch_dim(t), 48);
    hg_model_config bad = *t;
    bad.vocab_size = 16;
    CHECK(hg_config_check(&bad, err, sizeof err) != 0, "vocab 16 accepted");
    bad = hg_config_find("tiny-moe")->model;
    bad.moe_router_topk = bad.num_experts + 1;
    CHECK(hg_config_check(&bad, err, sizeof err) != 0, "top-k above the expert count accepted");
    bad = *t;
    bad.image_size = 18;
    CHECK(hg_config_check(&bad, err, sizeof err) != 0, "image 18 patch 4 accepted");
}

int main(void)
{
    test_determinism();
    test_distribution();
    test_consistency();
    test_patchify_targets();
    test_floor();
    test_configs();
    return check_summary("test_model_data");
}
