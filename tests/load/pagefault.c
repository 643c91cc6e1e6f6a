/*
 * pagefault.c — what a first touch of fresh anonymous memory costs on this
 * machine: page by page (each touch faults), with MAP_POPULATE (the kernel
 * fills the range in one call), and with transparent huge pages.
 *
 *   tests/load/build.sh /tmp/sbload && taskset -c 0 /tmp/sbload/pagefault [MiB]
 *
 * In this project's VM a fresh page costs 10-17 µs whichever way it is
 * touched, so every KiB a new connection holds costs about 4 µs of CPU on a
 * ramp of new connections (docs/benchmarks.md, session 6).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Touches one byte per 4 KiB page; returns µs per page. */
static double touch(char *p, size_t size)
{
    double t0 = now();
    for (size_t i = 0; i < size; i += 4096)
        p[i] = 1;
    return (now() - t0) / (double)(size / 4096) * 1e6;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    if (mib == 0 || mib > 4096) {
        fprintf(stderr, "usage: pagefault [MiB, 1-4096]\n");
        return 2;
    }
    size_t size = mib << 20, huge = 2u << 20;
    char *a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        return 1;
    double faulted = touch(a, size);

    double t0 = now();
    char *b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (b == MAP_FAILED)
        return 1;
    double populated = ((now() - t0) * 1e6 + touch(b, size) * (double)(size / 4096)) / (double)(size / 4096);

    char *c = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED)
        return 1;
    char *ca = (char *)(((uintptr_t)c + huge - 1) & ~(uintptr_t)(huge - 1));
    int thp = madvise(ca, size, MADV_HUGEPAGE);
    double hugepages = touch(ca, size);

    printf("{\"mib\":%zu,\"us_per_page_faulted\":%.2f,\"us_per_page_populated\":%.2f,\"us_per_page_thp\":%.2f,"
           "\"thp_madvise\":%s}\n",
           mib, faulted, populated, hugepages, thp == 0 ? "true" : "false");
    return 0;
}
