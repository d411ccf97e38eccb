// CPU reference MoE ops: router (softmax, top-k, renormalised gates), the
// load-balancing loss, permute / unpermute; backward against finite differences.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "tests/test_kernels_util.h"

#define ATOL 2e-3f
#define RTOL 1e-2f

enum { N = 6, E = 5, K = 2, C = 3 };

// Logits with gaps of 0.6 between experts, so small steps never change the top-k.
static void separated_logits(float *l)
{
    for (int n = 0; n < N; n++) {
        int shift = (int)rand_uniform(0, E);
        for (int e = 0; e < E; e++) l[n * E + e] = 0.6f * ((e + shift) % E) + rand_uniform(0, 0.05f);
    }
}

struct rt { float *logits, *probs, *gates, *rg, coeff; int *idx; };
static double rt_loss(void *p)
{
    struct rt *c = p;
    float aux;
    ref_moe_router_forward(c->probs, c->idx, c->gates, c->logits, N, E, K);
    ref_moe_aux_loss_forward(&aux, c->probs, c->idx, N, E, K, c->coeff);
    return dot_d(c->gates, c->rg, N * K) + aux;
}

static void test_router(void)
{
    struct rt c = {zeros(N * E), zeros(N * E), zeros(N * K), rand_array(N * K, -1, 1), 0.7f,
                   calloc(N * K, sizeof(int))};
    separated_logits(c.logits);
    rt_loss(&c);
    float *d = rand_array(N * E, -9, 9), *fd = zeros(N * E);
    ref_moe_router_backward(d, c.rg, c.probs, c.idx, c.gates, c.coeff, N, E, K);
    finite_diff(fd, c.logits, N * E, rt_loss, &c, 1e-3f);
    expect_close("moe router+aux dlogits vs fd", d, fd, N * E, ATOL, RTOL);

    // Known picks: [0.1 2 -1 1.5] -> experts 1 then 3, gates renormalised over the two.
    float l[4] = {0.1f, 2, -1, 1.5f}, p[4], g[2];
    int idx[2];
    ref_moe_router_forward(p, idx, g, l, 1, 4, 2);
    CHECK(idx[0] == 1 && idx[1] == 3, "top-2 of [0.1 2 -1 1.5] = [%d %d], expected [1 3]", idx[0], idx[1]);
    float want_g[2] = {expf(2) / (expf(2) + expf(1.5f)), expf(1.5f) / (expf(2) + expf(1.5f))};
    expect_close("moe known gates", g, want_g, 2, 1e-6f, 1e-5f);
    // Ties pick the lower expert; uniform probs give aux = coeff (sum f_e = 1, P_e = 1/E).
    float u[4] = {0, 0, 0, 0}, aux, want_aux = 0.25f;
    ref_moe_router_forward(p, idx, g, u, 1, 4, 2);
    CHECK(idx[0] == 0 && idx[1] == 1, "ties: top-2 = [%d %d], expected [0 1]", idx[0], idx[1]);
    ref_moe_aux_loss_forward(&aux, p, idx, 1, 4, 2, 0.25f);
    expect_close("moe aux loss of uniform probs = coeff", &aux, &want_aux, 1, 1e-7f, 1e-6f);
    free(c.logits), free(c.probs), free(c.gates), free(c.rg), free(c.idx), free(d), free(fd);
}

static void test_plan(void)
{
    int idx[6] = {1, 0, 0, 2, 1, 2}, pos[6], off[4];
    int want_pos[6] = {2, 0, 1, 4, 3, 5}, want_off[4] = {0, 2, 4, 6};
    ref_moe_permute_plan(pos, off, idx, 3, 3, 2);
    for (int i = 0; i < 6; i++) CHECK_EQ(pos[i], want_pos[i]);
    for (int i = 0; i < 4; i++) CHECK_EQ(off[i], want_off[i]);
}

struct pm { int *pos; float *x, *xp, *gates, *yp, *y, *r; };
static double perm_loss(void *p)
{
    struct pm *c = p;
    ref_moe_permute_forward(c->xp, c->x, c->pos, N, K, C);
    return dot_d(c->xp, c->r, N * K * C);
}
static double unperm_loss(void *p)
{
    struct pm *c = p;
    ref_moe_unpermute_forward(c->y, c->yp, c->gates, c->pos, N, K, C);
    return dot_d(c->y, c->r, N * C);
}

static void test_permute(void)
{
    int idx[N * K], off[E + 1], pos[N * K];
    for (int n = 0; n < N; n++) idx[n * K] = n % E, idx[n * K + 1] = (n + 2) % E;
    ref_moe_permute_plan(pos, off, idx, N, E, K);
    struct pm c = {pos, rand_array(N * C, -1, 1), zeros(N * K * C), rand_array(N * K, 0, 1),
                   rand_array(N * K * C, -1, 1), zeros(N * C), rand_array(N * K * C, -1, 1)};
    float *dx = rand_array(N * C, -9, 9), *fd = zeros(N * K * C);
    ref_moe_permute_backward(dx, c.r, pos, N, K, C);
    finite_diff(fd, c.x, N * C, perm_loss, &c, 1e-2f);
    expect_close("moe permute dx vs fd", dx, fd, N * C, ATOL, RTOL);
    float *dyp = rand_array(N * K * C, -9, 9), *dg = zeros(N * K);
    ref_moe_unpermute_backward(dyp, dg, c.r, c.yp, c.gates, pos, N, K, C);
    finite_diff(fd, c.yp, N * K * C, unperm_loss, &c, 1e-2f);
    expect_close("moe unpermute dyp vs fd", dyp, fd, N * K * C, ATOL, RTOL);
    finite_diff(fd, c.gates, N * K, unperm_loss, &c, 1e-2f);
    expect_close("moe unpermute dgates vs fd", dg, fd, N * K, ATOL, RTOL);
    // Round trip: gates of 1/K make unpermute(permute(x)) = x.
    for (int i = 0; i < N * K; i++) c.gates[i] = 1.0f / K;
    ref_moe_permute_forward(c.xp, c.x, pos, N, K, C);
    ref_moe_unpermute_forward(c.y, c.xp, c.gates, pos, N, K, C);
    expect_close("moe permute/unpermute round trip", c.y, c.x, N * C, 1e-6f, 1e-6f);
    free(c.x), free(c.xp), free(c.gates), free(c.yp), free(c.y), free(c.r);
    free(dx), free(fd), free(dyp), free(dg);
}

int main(void)
{
    test_router();
    test_plan();
    test_permute();
    return check_summary("test_kernels_moe");
}
