// cuDNN's fused attention (SDPA: FlashAttention-class kernels on Hopper) for
// bf16, built with the cuDNN frontend's graph API. libcudnn is loaded at run
// time (the frontend's dynamic loading), so nothing links it: where it is
// missing, or the build has no frontend headers, attention.cu's own kernels run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "kernels/attention_cudnn.h"
#include "kernels/cuda_check.h"


static int env_flag(const char *name, int fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    return strcmp(v, "0") != 0;
}

extern "C" int attention_cudnn_wanted(void)
{
    const char *v = getenv("HGRID_ATTENTION");
    return !v || !*v || strcmp(v, "cudnn") == 0 || strcmp(v, "auto") == 0;
}

extern "C" int attention_cudnn_deterministic(void)
{
    return env_flag("HGRID_DETERMINISTIC", 0);
}

#ifdef HGRID_HAVE_CUDNN_FRONTEND

#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING
#include <cudnn_frontend.h>

#include <dlfcn.h>

#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <unordered_map>

namespace fe = cudnn_frontend;

// The frontend's dynamic loading calls cuDNN through this handle.
namespace cudnn_frontend {
void *cudnn_dlhandle;
}

enum { UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV };

typedef std::tuple<int, int, int, int, int, int, int, int> plan_key; // dev, dir, B, T, NH, HD, causal, det

struct plan {
    std::shared_ptr<fe::graph::Graph> graph;
    void *workspace; // its own: cuDNN's can exceed the library's scratch
};

static std::map<plan_key, plan> g_plans;
static std::set<plan_key> g_unplannable; // shapes cuDNN refused: our kernels run them
static std::map<int, cudnnHandle_t> g_handles;
static int g_broken; // set once cuDNN failed to load: stay on our kernels

static void say_unavailable(const char *why)
{
    if (!g_broken)
        fprintf(stderr, "hgrid kernels: notice: cuDNN attention unavailable (%s); using hgrid's "
                        "attention kernels (set HGRID_ATTENTION=hgrid to silence)\n", why);
    g_broken = 1;
}

// libcudnn.so.9 from the loader's path (LD_LIBRARY_PATH), or HGRID_CUDNN_LIB
// naming the file (e.g. the nvidia-cudnn wheel's lib/libcudnn.so.9).
static bool load_cudnn(void)
{
    if (fe::cudnn_dlhandle)
        return true;
    const char *lib = getenv("HGRID_CUDNN_LIB");
    fe::cudnn_dlhandle = dlopen(lib && *lib ? lib : "libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (!fe::cudnn_dlhandle) {
        char why[512];
        snprintf(why, sizeof why, "%s; put libcudnn.so.9 on LD_LIBRARY_PATH or name it in HGRID_CUDNN_LIB",
                 dlerror());
        say_unavailable(why);
        return false;
    }
    return true;
}

static cudnnHandle_t handle_for(int dev)
{
    if (!load_cudnn())
        return nullptr;
    auto it = g_handles.find(dev);
    if (it != g_handles.end())
        return it->second;
    cudnnHandle_t h = nullptr;
    try {
        if (fe::detail::create_handle(&h) != CUDNN_STATUS_SUCCESS)
            h = nullptr;
    } catch (const std::exception &e) {
        say_unavailable(e.what());
        return nullptr;
    }
    if (!h) {
        say_unavailable("cudnnCreate failed");
        return nullptr;
    }
    g_handles[dev] = h;
    return h;
}

// Packed qkv (B, T, 3, NH, HD) seen as three [B, NH, T, HD] tensors.
static std::shared_ptr<fe::graph::Tensor_attributes> qkv_tensor(fe::graph::Graph &g, const char *name,
                                                                int uid, int B, int T, int NH, int HD)
{
    int64_t row = 3LL * NH * HD;
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({B, NH, T, HD})
                        .set_stride({(int64_t)T * row, HD, row, 1}));
}

// (B, T, NH, HD) as [B, NH, T, HD].
static void out_layout(fe::graph::Tensor_attributes &t, int uid, int B, int T, int NH, int HD)
{
    int64_t row = (int64_t)NH * HD;
    t.set_uid(uid).set_dim({B, NH, T, HD}).set_stride({(int64_t)T * row, HD, row, 1});
}

// A shape cuDNN does not plan (e.g. T = 1) runs on our kernels; other
// shapes keep cuDNN. Said once per shape.
static void say_unplannable(const plan_key &key, const char *why)
{
    g_unplannable.insert(key);
    fprintf(stderr, "hgrid kernels: notice: cuDNN attention does not plan B=%d T=%d NH=%d HD=%d%s "
                    "(%s); hgrid's attention kernels run that shape\n",
            std::get<2>(key), std::get<3>(key), std::get<4>(key), std::get<5>(key),
            std::get<6>(key) ? " causal" : "", why);
}

static bool ok(fe::error_t e, const char *who, std::string *why)
{
    if (e.is_good())
        return true;
    *why = std::string(who) + ": " + e.get_message();
    return false;
}

static bool finish(fe::graph::Graph &g, cudnnHandle_t h, int64_t *workspace, const char *who,
                   std::string *why)
{
    return ok(g.validate(), who, why) && ok(g.build_operation_graph(h), who, why) &&
           ok(g.create_execution_plans({fe::HeurMode_t::A}), who, why) &&
           ok(g.check_support(h), who, why) && ok(g.build_plans(h), who, why) &&
           ok(g.get_workspace_size(*workspace), who, why);
}

static plan *plan_for(int dir, int B, int T, int NH, int HD, int causal, int det, cudnnHandle_t h)
{
    int dev = 0;
    cudaCheck(cudaGetDevice(&dev));
    plan_key key(dev, dir, B, T, NH, HD, causal, det);
    auto it = g_plans.find(key);
    if (it != g_plans.end())
        return &it->second;
    if (g_unplannable.count(key))
        return nullptr;
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto q = qkv_tensor(*g, "q", UID_Q, B, T, NH, HD);
    auto k = qkv_tensor(*g, "k", UID_K, B, T, NH, HD);
    auto v = qkv_tensor(*g, "v", UID_V, B, T, NH, HD);
    float scale = 1.0f / sqrtf((float)HD);
    try {
        if (dir == 0) {
            auto attrs = fe::graph::SDPA_attributes()
                             .set_name("attention_forward")
                             .set_generate_stats(true)
                             .set_attn_scale(scale)
                             .set_causal_mask(causal != 0);
            auto [o, stats] = g->sdpa(q, k, v, attrs);
            o->set_output(true);
            out_layout(*o, UID_O, B, T, NH, HD);
            stats->set_output(true)
                .set_data_type(fe::DataType_t::FLOAT)
                .set_uid(UID_STATS)
                .set_dim({B, NH, T, 1})
                .set_stride({(int64_t)NH * T, T, 1, 1});
        } else {
            auto o = g->tensor(fe::graph::Tensor_attributes().set_name("o"));
            out_layout(*o, UID_O, B, T, NH, HD);
            auto dout = g->tensor(fe::graph::Tensor_attributes().set_name("dout"));
            out_layout(*dout, UID_DO, B, T, NH, HD);
            auto stats = g->tensor(fe::graph::Tensor_attributes()
                                       .set_name("stats")
                                       .set_uid(UID_STATS)
                                       .set_data_type(fe::DataType_t::FLOAT)
                                       .set_dim({B, NH, T, 1})
                                       .set_stride({(int64_t)NH * T, T, 1, 1}));
            auto attrs = fe::graph::SDPA_backward_attributes()
                             .set_name("attention_backward")
                             .set_attn_scale(scale)
                             .set_causal_mask(causal != 0)
                             .set_deterministic_algorithm(det != 0);
            auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, attrs);
            int64_t row = 3LL * NH * HD;
            dq->set_output(true).set_uid(UID_DQ).set_dim({B, NH, T, HD}).set_stride({(int64_t)T * row, HD, row, 1});
            dk->set_output(true).set_uid(UID_DK).set_dim({B, NH, T, HD}).set_stride({(int64_t)T * row, HD, row, 1});
            dv->set_output(true).set_uid(UID_DV).set_dim({B, NH, T, HD}).set_stride({(int64_t)T * row, HD, row, 1});
        }
    } catch (const std::exception &e) {
        say_unplannable(key, e.what());
        return nullptr;
    }
    int64_t ws = 0;
    std::string why;
    try {
        if (!finish(*g, h, &ws, dir == 0 ? "forward plan" : "backward plan", &why)) {
            say_unplannable(key, why.c_str());
            return nullptr;
        }
    } catch (const std::exception &e) {
        say_unplannable(key, e.what());
        return nullptr;
    }
    plan &p = g_plans[key];
    p.graph = g;
    p.workspace = nullptr;
    if (ws > 0)
        cudaCheck(cudaMalloc(&p.workspace, (size_t)ws));
    return &p;
}

static int run(int dir, std::unordered_map<int64_t, void *> &pack, int B, int T, int NH, int HD,
               int causal, cudaStream_t stream)
{
    if (g_broken || !attention_cudnn_wanted())
        return -1;
    int dev = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudnnHandle_t h = handle_for(dev);
    if (!h)
        return -1;
    plan *p = plan_for(dir, B, T, NH, HD, causal, attention_cudnn_deterministic(), h);
    if (!p)
        return -1;
    if (fe::detail::set_stream(h, stream) != CUDNN_STATUS_SUCCESS) {
        say_unavailable("cudnnSetStream failed");
        return -1;
    }
    fe::error_t e = p->graph->execute(h, pack, p->workspace);
    if (e.is_bad()) {
        fprintf(stderr, "%s:%d: cuDNN attention %s failed: %s\n", __FILE__, __LINE__,
                dir == 0 ? "forward" : "backward", e.get_message().c_str());
        exit(EXIT_FAILURE);
    }
    return 0;
}

extern "C" int attention_cudnn_forward(void *out, float *lse, const void *qkv, int B, int T, int NH,
                                       int HD, int causal, cudaStream_t stream)
{
    size_t C = (size_t)NH * HD;
    char *q = (char *)qkv; // bf16: 2 bytes an element
    std::unordered_map<int64_t, void *> pack = {
        {UID_Q, q}, {UID_K, q + 2 * C}, {UID_V, q + 4 * C}, {UID_O, out}, {UID_STATS, lse}};
    return run(0, pack, B, T, NH, HD, causal, stream);
}

extern "C" int attention_cudnn_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                        const float *lse, int B, int T, int NH, int HD, int causal,
                                        cudaStream_t stream)
{
    size_t C = (size_t)NH * HD;
    char *q = (char *)qkv, *dq = (char *)dqkv; // bf16: 2 bytes an element
    std::unordered_map<int64_t, void *> pack = {
        {UID_Q, q}, {UID_K, q + 2 * C}, {UID_V, q + 4 * C}, {UID_O, (void *)out},
        {UID_DO, (void *)dout}, {UID_STATS, (void *)lse}, {UID_DQ, dq}, {UID_DK, dq + 2 * C},
        {UID_DV, dq + 4 * C}};
    return run(1, pack, B, T, NH, HD, causal, stream);
}

extern "C" int attention_cudnn_built(void)
{
    return 1;
}

#else // built without the cuDNN frontend's headers: attention.cu's kernels always run

extern "C" int attention_cudnn_forward(void *, float *, const void *, int, int, int, int, int,
                                       cudaStream_t)
{
    return -1;
}

extern "C" int attention_cudnn_backward(void *, const void *, const void *, const void *, const float *,
                                        int, int, int, int, int, cudaStream_t)
{
    return -1;
}

extern "C" int attention_cudnn_built(void)
{
    return 0;
}

#endif
