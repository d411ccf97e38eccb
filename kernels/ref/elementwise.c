// CPU reference: residual add and scaling.
#include "kernels/reference.h"

void ref_add_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ref_scale_inplace(float *x, float alpha, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}
