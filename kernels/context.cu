// The library's process-wide state: cuBLASLt handle and workspace, scratch.
#include "kernels/common.cuh"

#define LT_WORKSPACE_BYTES (32u << 20)
#define SCRATCH_BYTES (112u << 20)

static cublasLtHandle_t lt;
static void *lt_workspace, *scratch;

extern "C" size_t kdtype_size(kdtype dt) { return dt == KD_F32 ? 4 : 2; }

extern "C" void kernels_init(void)
{
    kassert(lt == NULL, "kernels_init called twice");
    cublasCheck(cublasLtCreate(&lt));
    cudaCheck(cudaMalloc(&lt_workspace, LT_WORKSPACE_BYTES));
    cudaCheck(cudaMalloc(&scratch, SCRATCH_BYTES));
}

extern "C" void kernels_free(void)
{
    if (!lt) return;
    cublasCheck(cublasLtDestroy(lt));
    cudaCheck(cudaFree(lt_workspace));
    cudaCheck(cudaFree(scratch));
    lt = NULL, lt_workspace = scratch = NULL;
}

void *kernels_scratch(size_t bytes, const char *who)
{
    kassert(scratch != NULL, "call kernels_init() before the launchers");
    if (bytes > SCRATCH_BYTES) {
        fprintf(stderr, "%s needs %zu bytes of scratch, the library has %u: use smaller shapes\n",
                who, bytes, SCRATCH_BYTES);
        exit(EXIT_FAILURE);
    }
    return scratch;
}

cublasLtHandle_t kernels_lt(void)
{
    kassert(lt != NULL, "call kernels_init() before the launchers");
    return lt;
}

void *kernels_lt_workspace(size_t *bytes)
{
    *bytes = LT_WORKSPACE_BYTES;
    return lt_workspace;
}
