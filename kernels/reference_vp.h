// Plain C references of kernels/vocab_parallel.h's launchers: same names
// with a ref_ prefix, same arguments minus the type and stream (no CUDA
// headers needed: CPU code and CI use these).
#ifndef HGRID_KERNELS_REFERENCE_VP_H
#define HGRID_KERNELS_REFERENCE_VP_H

#ifdef __cplusplus
extern "C" {
#endif

void ref_vp_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C,
                              int v0, int Vl);
void ref_embedding_backward_rows(float *dwte, const float *dout, const int *rows,
                                 const int *starts, const int *positions, int R, int C);
void ref_vp_crossentropy_max(float *mx, const float *logits, int N, int Vl);
void ref_vp_crossentropy_sums(float *mx, float *sums, const float *gathered, int tp,
                              const float *logits, const int *targets, int N, int v0, int Vl);
void ref_vp_crossentropy_finish(float *logits, float *losses, const float *sums, const float *mx,
                                const int *targets, const float *mask, float dloss, int N, int v0,
                                int Vl);

#ifdef __cplusplus
}
#endif

#endif
