// A GPU timeline of one process, for the device machines where Nsight
// Systems does not run. Build it as a shared library against CUPTI and load
// it with CUDA_INJECTION64_PATH=/path/libcupti_trace.so; at exit it writes
// one line per kernel, copy, memset, synchronization and runtime call to
// $HGRID_TRACE_OUT (default cupti_trace.txt):
//   start_ns end_ns stream kind name
// kind: K kernel, C copy, S memset, Y synchronization, R runtime call (its
// thread in the stream column). scripts/device/timeline.py reads it.
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

static FILE *out;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *size = 16u << 20;
    *buffer = aligned_alloc(8, *size);
    *max_records = 0;
}

static void write_record(const CUpti_Activity *r)
{
    switch (r->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const CUpti_ActivityKernel10 *k = (const void *)r;
        fprintf(out, "%llu %llu %u K %s\n", (unsigned long long)k->start, (unsigned long long)k->end,
                k->streamId, k->name);
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = (const void *)r;
        fprintf(out, "%llu %llu %u C copy%u_%llu_bytes\n", (unsigned long long)m->start,
                (unsigned long long)m->end, m->streamId, m->copyKind, (unsigned long long)m->bytes);
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = (const void *)r;
        fprintf(out, "%llu %llu %u S memset_%llu_bytes\n", (unsigned long long)m->start,
                (unsigned long long)m->end, m->streamId, (unsigned long long)m->bytes);
        break;
    }
    case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
        const CUpti_ActivitySynchronization2 *s = (const void *)r;
        fprintf(out, "%llu %llu %u Y sync%d\n", (unsigned long long)s->start, (unsigned long long)s->end,
                s->streamId, (int)s->type);
        break;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME: {
        const CUpti_ActivityAPI *a = (const void *)r;
        const char *name = NULL;
        if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS || !name)
            name = "runtime";
        fprintf(out, "%llu %llu %u R %s\n", (unsigned long long)a->start, (unsigned long long)a->end,
                a->threadId, name);
        break;
    }
    default:
        break;
    }
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid)
{
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *r = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS)
        write_record(r);
    free(buffer);
}

static void flush_at_exit(void)
{
    cuptiActivityFlushAll(1);
    if (out)
        fclose(out);
}

int InitializeInjection(void)
{
    const char *path = getenv("HGRID_TRACE_OUT");
    out = fopen(path ? path : "cupti_trace.txt", "w");
    if (!out) {
        perror("cupti_trace: HGRID_TRACE_OUT");
        return 0;
    }
    const CUpti_ActivityKind kinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                        CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_SYNCHRONIZATION,
                                        CUPTI_ACTIVITY_KIND_RUNTIME};
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) {
        fprintf(stderr, "cupti_trace: cuptiActivityRegisterCallbacks failed; no trace\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (cuptiActivityEnable(kinds[i]) != CUPTI_SUCCESS)
            fprintf(stderr, "cupti_trace: activity kind %d not traced\n", (int)kinds[i]);
    cuptiActivityFlushPeriod(500); // buffers written as they fill, not only at exit
    atexit(flush_at_exit);
    return 1;
}
