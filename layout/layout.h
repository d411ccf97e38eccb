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
} hg_model_config;

// A layout as the user gave it, with Megatron-LM's flag names.
typedef struct {
    int encoder_tp, encoder_dp;
    int llm_tp, llm_cp, llm_pp, llm_dp, llm_ep, llm_expt_tp;
    bool llm_only;
    int world_size;        // 0: not given
    int micro_batch_size;
    int global_batch_size; // 0: micro_batch_size * llm_dp
    hg_model_config model;
} hg_layout_spec;

typedef enum { HG_MODULE_ENCODER = 0, HG_MODULE_LLM = 1 } hg_module_id;

// Dense dims [tp, cp, dp, pp] and expert dims [expt_tp, ep, expt_dp, pp].
typedef enum { HG_DIM_TP, HG_DIM_CP, HG_DIM_DP, HG_DIM_PP, HG_NUM_DENSE_DIMS } hg_dense_dim;
typedef enum { HG_XDIM_TP, HG_XDIM_EP, HG_XDIM_DP, HG_XDIM_PP, HG_NUM_EXPERT_DIMS } hg_expert_dim;

typedef struct {
    hg_module_id id;
    int rank_offset, num_ranks;
    int dense[HG_NUM_DENSE_DIMS];   // tp, cp, dp, pp
    int expert[HG_NUM_EXPERT_DIMS]; // expt_tp, ep, expt_dp, pp
} hg_module_grid;

// A validated layout with everything derived from it.
typedef struct {
    hg_layout_spec spec; // defaults filled in
    int world_size;
    int num_microbatches;
    int padded_vocab_size; // vocab rounded up to a multiple of llm_tp
    int num_modules;
    hg_module_grid modules[2]; // encoder (unless llm_only), then llm
} hg_plan;

typedef struct {
    hg_module_id module;
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

// The model shape's own rules and bounds (no grid): every size positive
// and bounded, hidden sizes divisible by their head counts, whole patches
// leaving caption positions, a vocabulary holding the caption tokens.
// Returns 0, or -1 with a one-line reason naming the flags. hg_plan_build
// applies it; model code calls it for shapes outside a plan.
int hg_config_check(const hg_model_config *m, char *err, size_t errlen);

const char *hg_module_name(hg_module_id id);
const hg_module_grid *hg_plan_module(const hg_plan *plan, hg_module_id id); // NULL if absent
const hg_module_grid *hg_plan_module_of_rank(const hg_plan *plan, int rank);
void hg_rank_coords(const hg_plan *plan, int rank, hg_coords *out);

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

// ---- bridge (absent with llm_only)
bool hg_plan_has_bridge(const hg_plan *plan);
hg_fan hg_bridge_fan(const hg_plan *plan);
int hg_bridge_leader(const hg_plan *plan, hg_module_id module, int dp_lane);
// Bridge group: encoder leaders by lane, then LLM leaders by lane.
int hg_bridge_size(const hg_plan *plan);
int hg_bridge_member(const hg_plan *plan, int index);
int hg_bridge_index_of_rank(const hg_plan *plan, int rank); // -1 if not a leader
int hg_bridge_num_edges(const hg_plan *plan);
// Edge e as (encoder rank, llm rank), sorted by encoder lane then llm lane.
void hg_bridge_edge(const hg_plan *plan, int e, int *encoder_rank, int *llm_rank);

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

#endif
