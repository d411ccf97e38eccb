// Deterministic synthetic image-caption data: each sample (seed, index)
// is a coloured shape in one cell of a 3x3 grid on a dim noisy background,
// and a caption naming colour, shape and cell. The caption's first content
// token is the colour, which only the image tells.
#ifndef HGRID_MODEL_DATA_H
#define HGRID_MODEL_DATA_H

#include <stdint.h>

// Token ids; captions use only the first HG_DATA_VOCAB ids of any vocab.
enum {
    HG_TOK_PAD = 0,
    HG_TOK_BOS = 1,
    HG_TOK_EOS = 2,
    HG_TOK_COLOUR0 = 3, // HG_NUM_COLOURS colour words
    HG_NUM_COLOURS = 8,
    HG_TOK_SHAPE0 = HG_TOK_COLOUR0 + HG_NUM_COLOURS, // HG_NUM_SHAPES shape words
    HG_NUM_SHAPES = 4,
    HG_TOK_AT = HG_TOK_SHAPE0 + HG_NUM_SHAPES,
    HG_TOK_TOP, HG_TOK_MIDDLE, HG_TOK_BOTTOM,
    HG_TOK_LEFT, HG_TOK_CENTER, HG_TOK_RIGHT,
    HG_DATA_VOCAB
};
// Longest caption, BOS and EOS included: BOS colour shape at row col EOS.
#define HG_MAX_CAPTION 7

typedef struct {
    int colour; // [0, HG_NUM_COLOURS)
    int shape;  // [0, HG_NUM_SHAPES): square, circle, triangle, cross
    int row;    // [0, 3): top, middle, bottom
    int col;    // [0, 3): left, center, right
} hg_scene;

// The scene of sample `index`; attributes are independent and uniform.
void hg_scene_of(uint64_t seed, uint64_t index, hg_scene *scene);

// Draws sample `index`'s image, (size, size, 3) row-major, values in [-1, 1].
void hg_render(uint64_t seed, uint64_t index, const hg_scene *scene, int size, float *image);

// Writes the caption (BOS words EOS) into tokens[0..len) and pads with
// HG_TOK_PAD; returns the caption length (at most HG_MAX_CAPTION <= len).
// The middle cell reads "at center", the others "at <row> <col>".
int hg_caption(const hg_scene *scene, int *tokens, int len);

// A batch of B samples starting at first_index: images (B, size, size, 3),
// tokens (B, text_len).
void hg_batch(uint64_t seed, uint64_t first_index, int B, int size, int text_len, float *images,
              int *tokens);

// Encoder e's images of samples [first_index, first_index + B): the
// scenes of hg_batch's samples, each drawn with encoder e's own noise
// (encoder 0's are hg_batch's images).
void hg_encoder_images(uint64_t seed, int encoder, uint64_t first_index, int B, int size,
                       float *images);

// Rearranges images (B, S, S, 3) into patches (B, (S/p)^2, p*p*3), patches in
// row-major order and each patch's pixels row-major, channels last.
void hg_patchify(const float *images, int B, int S, int p, float *patches);

// Next-token targets of the caption positions (B, text_len): tokens[t+1],
// or -1 where that is padding or past the end (no loss there).
void hg_caption_targets(const int *tokens, int B, int text_len, int *targets);

// The text-only floor: the lowest mean caption cross-entropy (nats per
// target token) any model can reach from the previous tokens alone.
double hg_text_only_floor(void);

// The word a token stands for ("red", "<bos>"), or "?" if none.
const char *hg_token_word(int token);

#endif
