// A stack of pre-LN transformer blocks split Megatron-style over a tp
// group: qkv and fc column-parallel (each rank holds NH/tp heads and F/tp
// MLP columns; fc with its GELU in the matmul's epilogue), attn_proj and
// fc_proj row-parallel (partial sums all-reduced over tp; the replicated
// bias and residual added once, by tp rank 0's matmul epilogue before the
// all-reduce). The residual stream (B, T, C) is replicated over tp. With experts the MLP is ep_moe. Activations are kept
// per slot, one slot per micro-batch in flight. Activations have the ops'
// type (char * below: byte arithmetic by the element size); statistics
// are fp32.
#ifndef HGRID_TRAIN_TP_STACK_H
#define HGRID_TRAIN_TP_STACK_H

#include "train/ep_moe.h"
#include "train/ops.h"

typedef struct {
    char *res;                        // (L + 1, B, T, C) input, between blocks, output
    char *ln1;                        // (L, B, T, C)
    float *ln1_mean, *ln1_rstd;       // (L, B, T)
    char *qkv;                        // (L, B, T, 3 C/tp)
    char *att;                        // (L, B, T, C/tp)
    float *lse;                       // (L, B, NH/tp, T)
    char *res2, *ln2;                 // (L, B, T, C)
    float *ln2_mean, *ln2_rstd;       // (L, B, T)
    char *fch, *fch_gelu;             // (L, B, T, F/tp); empty with experts
    ep_moe_saved moe;                 // with experts
} tp_slot;

typedef struct {
    int L, B, T, C, F, NH, causal; // F, NH: this rank's share (F is 0 with experts)
    int experts;
    const tr_ops *ops;
    size_t es; // bytes per activation
    tr_group *tp;
    int num_slots;
    tp_slot *slots;
    ep_moe moe;
    char *dres;          // (B, T, C) gradient of the residual stream
    char *dC, *datt;     // (B, T, C), (B, T, C/tp)
    char *dF, *dqkv;     // (B, T, F/tp), (B, T, 3 C/tp)
    // Called by tp_stack_backward once a layer's gradients are added (if
    // set): the step's last backward hands each layer's final gradients
    // to their reduction while the layers below it run.
    void (*layer_done)(void *ctx, int layer);
    void *layer_ctx;
} tp_stack;

// L local layers over (B, T, C) with NH heads and MLP width F in total
// (split here over tp); E experts of top-k K over ep (E = 0: dense).
// Returns 0, or -1 if memory is short (tp_stack_free cleans up).
int tp_stack_alloc(tp_stack *s, const tr_ops *ops, int L, int B, int T, int C, int F, int NH,
                   int causal, int E, int K, tr_group *tp, tr_group *ep, int num_slots);
void tp_stack_free(tp_stack *s);
// slots[slot].res[0] holds the input; leaves the output in res[L].
// work: the working copy of the weights (act), grads fp32.
void tp_stack_forward(tp_stack *s, int slot, const hg_param_table *t, void *work);
// s->dres holds d(loss)/d(output); leaves d(loss)/d(input) there.
void tp_stack_backward(tp_stack *s, int slot, const hg_param_table *t, void *work,
                       float *grads);
// The slot's output (B, T, C).
char *tp_stack_output(const tp_stack *s, int slot);

#endif
