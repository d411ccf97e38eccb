// libFuzzer: a byte stream, cut into reads at fuzzer-chosen points, through
// the frame reader and the Envelope decoder.
#include <stdlib.h>

#include "wire/wire.h"

static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    (void)ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    if (env) {
        char why[160];
        wire_check_version(env, why, sizeof why);
        wire_free_envelope(env);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = 1 + data[0] % 64; // read size for this run
    uint32_t max_frame = 64u + (uint32_t)data[1] * 256u;
    data += 2;
    size -= 2;
    wire_reader r;
    wire_reader_init(&r, max_frame);
    char err[128];
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (wire_reader_feed(&r, data + off, n, on_frame, NULL, err, sizeof err) < 0)
            break;
    }
    wire_reader_free(&r);
    return 0;
}
