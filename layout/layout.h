// Layout engine: validates a heterogeneous encoder + LLM layout and
// enumerates ranks, coordinates, process groups and bridge edges exactly as
// Megatron-LM's HyperCommGrid does. Pure code: no I/O, no allocation.
#ifndef HGRID_LAYOUT_H
#define HGRID_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

// Largest world the engine accepts; bounds every caller-sized buffer.
#define HG_MAX_WORLD (1 << 20)
#define HG_ERR_LEN 256

// Model shape bounds: what one worker can hold, and what keeps every
// derived size (patches, tensor elements) inside an int.
#define HG_MAX_LAYERS 1024
#define HG_MAX_HIDDEN 65536
#define HG_MAX_FFN_HIDDEN (4 * HG_MAX_HIDDEN)
#define HG_MAX_VOCAB (1 << 24)
#define HG_MAX_SEQ_LENGTH (1 << 20)
#define HG_MAX_EXPERTS 256
#define HG_MAX_IMAGE_SIZE 8192
#define HG_MAX_TENSOR 2147483647L // elements of one weight matrix
// The synthetic data's needs: caption tokens (model/data.h's
// HG_DATA_VOCAB) and positions after the image patches.
#define HG_MIN_VOCAB 22
#define HG_MIN_CAPTION_POSITIONS 8
// Megatron's --make-vocab-size-divisible-by default.
#define HG_DEFAULT_VOCAB_DIVISOR 128

typedef struct {
    int num_layers;
    int hidden_size;
    int num_attention_heads;
    int ffn_hidden_size; // 0: 4 * hidden_size
    int vocab_size;
    int seq_length;
    int num_experts; // 0: dense MLP
    int moe_router_topk;
    int encoder_num_layers;
    int encoder_hidden_size;
    int encoder_num_attention_heads;
    int image_size;
    int patch_size;
    // Encoders whose image embeddings, in order, form the LLM's prefix (0:
    // one); hg_plan_build sets it from the layout's encoders.
    int image_streams;
} hg_model_config;

// Several encoders (--encoder NAME:tp=T,dp=D, repeated) and their names.
#define HG_MAX_ENCODERS 8
#define HG_MAX_MODULES (HG_MAX_ENCODERS + 1)
#define HG_NAME_LEN 32 // a module's name with its NUL: [a-z0-9_-], 1 to 31 characters
#define HG_GROUP_NAME_LEN (8 + HG_NAME_LEN) // "bridge:NAME"

typedef struct {
    char name[HG_NAME_LEN];
    int tp, dp; // cp = pp = 1, as for the one encoder
} hg_encoder_spec;

// A layout as the user gave it, with Megatron-LM's flag names.
typedef struct {
    int encoder_tp, encoder_dp; // the one encoder, "encoder", unless encoders are listed
    int num_encoders;           // 0: that one encoder (none with llm_only)
    hg_encoder_spec encoders[HG_MAX_ENCODERS]; // in rank order
    bool encoder_shorthand;     // set by the flag parser when --encoder-tp/-dp are given
    int llm_tp, llm_cp, llm_pp, llm_dp, llm_ep, llm_expt_tp;
    bool llm_offset_given;      // else the LLM starts right after the encoders
    int llm_offset;             // its first rank (--llm-offset)
    bool colocated;             // --mimo-layout colocated: every module spans every rank
    bool llm_only;
    int world_size;        // 0: not given
    int micro_batch_size;
    int global_batch_size; // 0: micro_batch_size * llm_dp
    int make_vocab_size_divisible_by; // the vocabulary is padded to a multiple of this x
                                      // llm_tp (0: of llm_tp, as before the flag)
    hg_model_config model;
} hg_layout_spec;

typedef enum { HG_MODULE_ENCODER = 0, HG_MODULE_LLM = 1 } hg_module_id;

// Dense dims [tp, cp, dp, pp] and expert dims [expt_tp, ep, expt_dp, pp].
typedef enum { HG_DIM_TP, HG_DIM_CP, HG_DIM_DP, HG_DIM_PP, HG_NUM_DENSE_DIMS } hg_dense_dim;
typedef enum { HG_XDIM_TP, HG_XDIM_EP, HG_XDIM_DP, HG_XDIM_PP, HG_NUM_EXPERT_DIMS } hg_expert_dim;

typedef struct {
    hg_module_id id;
    int index;               // position in hg_plan.modules: encoders in order, then the LLM
    char name[HG_NAME_LEN];  // "encoder" (or the --encoder name), "llm"
    int rank_offset, num_ranks;
    int dense[HG_NUM_DENSE_DIMS];   // tp, cp, dp, pp
    int expert[HG_NUM_EXPERT_DIMS]; // expt_tp, ep, expt_dp, pp
} hg_module_grid;

// A validated layout with everything derived from it.
typedef struct {
    hg_layout_spec spec; // defaults filled in
    int world_size;
    int num_microbatches;
    int padded_vocab_size; // vocab rounded up to make_vocab_size_divisible_by x llm_tp
    int num_encoders;
    bool colocated;        // every module spans [0, world_size)
    int num_modules;       // num_encoders + 1
    hg_module_grid modules[HG_MAX_MODULES]; // encoders in order, then the llm
} hg_plan;

typedef struct {
    hg_module_id module;
    int module_index; // into hg_plan.modules
    int tp, cp, dp, pp;
    int ep, expt_tp, expt_dp;
} hg_coords;

// Every process group kind a worker may belong to (DESIGN, "Process groups").
typedef enum {
    HG_GROUP_TP,
    HG_GROUP_CP,
    HG_GROUP_DP,
    HG_GROUP_PP,
    HG_GROUP_TP_CP,
    HG_GROUP_DP_CP,
    HG_GROUP_TP_DP,
    HG_GROUP_TP_DP_CP,
    HG_GROUP_MP,
    HG_GROUP_MODULE,
    HG_GROUP_EMBD,
    HG_GROUP_POS_EMBD,
    HG_GROUP_EP,
    HG_GROUP_EXPT_TP,
    HG_GROUP_EXPT_DP,
    HG_GROUP_TP_EP,
    HG_GROUP_TP_EP_PP,
    HG_NUM_GROUP_KINDS
} hg_group_kind;

typedef enum { HG_FAN_EQUAL, HG_FAN_IN, HG_FAN_OUT } hg_fan;

// Defaults of DESIGN's table and of the `small` model.
void hg_layout_spec_defaults(hg_layout_spec *spec);

// Validates spec and derives the plan. Returns 0, or -1 with a one-line
// reason naming the flags and their values in err.
int hg_plan_build(const hg_layout_spec *spec, hg_plan *plan, char *err, size_t errlen);

// Megatron's padded vocabulary: vocab_size rounded up to a multiple of
// divisible_by x tp (divisible_by 0 counts as 1; the product at most
// HG_MAX_VOCAB, as hg_plan_build checks).
int hg_padded_vocab(int vocab_size, int divisible_by, int tp);

// The model shape's own rules and bounds (no grid): every size positive
// and bounded, hidden sizes divisible by their head counts, whole patches
// leaving caption positions, a vocabulary holding the caption tokens.
// Returns 0, or -1 with a one-line reason naming the flags. hg_plan_build
// applies it; model code calls it for shapes outside a plan.
int hg_config_check(const hg_model_config *m, char *err, size_t errlen);

const char *hg_module_name(hg_module_id id);
// The first module of that kind (the LLM, or the first encoder); NULL if absent.
const hg_module_grid *hg_plan_module(const hg_plan *plan, hg_module_id id);
// The first module holding rank (a colocated rank is in the encoder and the LLM).
const hg_module_grid *hg_plan_module_of_rank(const hg_plan *plan, int rank);
// Every module holding rank, in plan order; returns how many (1, or 2 colocated).
int hg_plan_modules_of_rank(const hg_plan *plan, int rank, const hg_module_grid *out[2]);
// Coordinates of rank in its first module, or in module m.
void hg_rank_coords(const hg_plan *plan, int rank, hg_coords *out);
void hg_module_coords(const hg_module_grid *m, int rank, hg_coords *out);

// ---- groups
const char *hg_group_name(hg_group_kind kind);
bool hg_group_applies(const hg_module_grid *m, hg_group_kind kind);
int hg_group_count(const hg_module_grid *m, hg_group_kind kind);
int hg_group_size(const hg_module_grid *m, hg_group_kind kind);
// Writes group g's members (hg_group_size of them) in HyperCommGrid order.
void hg_group_members(const hg_module_grid *m, hg_group_kind kind, int g, int *ranks);
// The group of `kind` holding rank; returns false if the rank is in none
// (embd / pos_embd on middle pipeline stages).
bool hg_group_of_rank(const hg_module_grid *m, hg_group_kind kind, int rank, int *g,
                      int *rank_in_group);
// The first kind in table order whose groups are the same rank sets as
// kind's; such kinds share one communicator.
hg_group_kind hg_group_canonical(const hg_module_grid *m, hg_group_kind kind);
// hg_group_canonical of every kind of every module, by module index: it
// walks the module, so callers compute it once per plan.
typedef struct {
    hg_group_kind kind[HG_MAX_MODULES][HG_NUM_GROUP_KINDS];
} hg_canonical_kinds;
void hg_canonical_kinds_build(const hg_plan *plan, hg_canonical_kinds *out);

// ---- a rank's groups: what an Assignment names, in its order
#define HG_GROUP_BRIDGE (-1) // hg_rank_group.kind of a bridge
#define HG_MAX_RANK_GROUPS (HG_NUM_GROUP_KINDS + HG_MAX_ENCODERS)
typedef struct {
    int kind;      // hg_group_kind, or HG_GROUP_BRIDGE
    int bridge;    // a bridge's index (hg_plan_num_bridges); -1 otherwise
    int canonical; // the kind whose communicator it shares (its own kind; HG_GROUP_BRIDGE)
    int index;     // which group of its kind (0 for a bridge)
    int size, rank_in_group;
} hg_rank_group;
// Rank's groups in module m (which holds it): every kind that applies and
// holds it in table order, then its bridges in bridge order. canonical may
// be NULL (each group its own canonical kind). Returns how many.
int hg_rank_groups(const hg_plan *plan, const hg_canonical_kinds *canonical,
                   const hg_module_grid *m, int rank, hg_rank_group *out);
// The members of one of them (g->size ranks) in group order.
void hg_rank_group_members(const hg_plan *plan, const hg_module_grid *m, const hg_rank_group *g,
                           int *ranks);
// The name an Assignment gives it: the kind's, "bridge", or "bridge:NAME"
// with several encoders. Points into plan or a static table.
const char *hg_rank_group_name(const hg_plan *plan, const hg_rank_group *g, char *buf,
                               size_t len);

// ---- bridges: one per encoder, into the LLM's first stage (none with
// llm_only or colocated). Bridge b joins encoder module b and the LLM.
int hg_plan_num_bridges(const hg_plan *plan);
bool hg_plan_has_bridge(const hg_plan *plan);
hg_fan hg_bridge_fan(const hg_plan *plan, int b);
// The leader of dp lane of the first module of that kind, or of module m.
int hg_bridge_leader(const hg_plan *plan, hg_module_id module, int dp_lane);
int hg_module_bridge_leader(const hg_module_grid *m, int dp_lane);
// Bridge b's group: encoder leaders by lane, then LLM leaders by lane.
int hg_bridge_size(const hg_plan *plan, int b);
int hg_bridge_member(const hg_plan *plan, int b, int index);
int hg_bridge_index_of_rank(const hg_plan *plan, int b, int rank); // -1 if not a leader
int hg_bridge_num_edges(const hg_plan *plan, int b);
// Edge e as (encoder rank, llm rank), sorted by encoder lane then llm lane.
void hg_bridge_edge(const hg_plan *plan, int b, int e, int *encoder_rank, int *llm_rank);
// The edges of bridge b touching rank, in edge order: the peer, its index
// in the bridge, and whether rank sends. Returns how many (at most
// max(dp) / min(dp)), writing at most max of them.
typedef struct {
    int rank, rank_in_bridge;
    bool send;
} hg_bridge_peer;
int hg_bridge_peers(const hg_plan *plan, int b, int rank, hg_bridge_peer *out, int max);

// ---- flags (Megatron-LM names; `--flag value` or `--flag=value`)
typedef enum {
    HG_FLAG_OK,      // consumed argv[*i] (and its value)
    HG_FLAG_UNKNOWN, // not a layout flag; *i unchanged
    HG_FLAG_USAGE,   // missing value or not an integer (a usage error)
    HG_FLAG_INVALID  // a value the layout rules refuse (an invalid layout)
} hg_flag_status;

hg_flag_status hg_layout_parse_flag(hg_layout_spec *spec, int argc, char **argv, int *i,
                                    char *err, size_t errlen);
// The first model flag (its name without "--") on which a and b differ,
// with both values; NULL when they describe the same model.
const char *hg_model_config_differs(const hg_model_config *a, const hg_model_config *b,
                                    int *a_value, int *b_value);
// One line per flag with its default, for --help.
extern const char hg_layout_flags_help[];
// The k-th layout flag's name without "--" (for suggestions); NULL past the last.
const char *hg_layout_flag_name(size_t k);

#endif
