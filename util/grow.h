// A growable array's capacity doubled until it holds what is needed.
#ifndef HGRID_UTIL_GROW_H
#define HGRID_UTIL_GROW_H

#include <stdlib.h>

// Grows *p (an array of elements of size bytes, *cap of them) to hold need;
// 0, or -1 out of memory (*p unchanged).
static inline int grow_array(void *p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *q = realloc(*(void **)p, (size_t)n * size);
    if (!q)
        return -1;
    *(void **)p = q;
    *cap = n;
    return 0;
}

#endif
