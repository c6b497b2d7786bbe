/* tracedfuture/_core/_clock.h: the hot path's clock, and its conversion to
 * time.monotonic_ns() when records are read.
 *
 * Reading CLOCK_MONOTONIC costs about 24 ns here (the vDSO fences and scales
 * the TSC); reading the TSC itself costs about 10 ns, and every record takes
 * one reading. Where the TSC is invariant and the kernel keeps time with it, a
 * record holds raw ticks, and the ring converts them to monotonic nanoseconds
 * as records leave it (Ring.take, take_batch, window): nothing outside the ring
 * ever sees a tick.
 *
 * The conversion interpolates between sync points, pairs (tick, ns) read
 * together: one when the module is imported, one each time records are read.
 * Every record read lies between two of them (it was written after the first
 * and before the read), so its error is that of reading a pair, tens of
 * nanoseconds, plus whatever NTP's slewing of CLOCK_MONOTONIC changed between
 * the two (a flight recorder's window read once: its records are ordered and
 * spaced by the TSC, which does not slew). Ticks convert monotonically.
 *
 * Elsewhere (another architecture, a TSC the kernel does not use as its clock
 * source, or TRACEDFUTURE_CLOCK=monotonic), records hold CLOCK_MONOTONIC
 * nanoseconds and the conversion is the identity. _cfuture.CLOCK says which.
 */
#ifndef TRACEDFUTURE_CLOCK_H
#define TRACEDFUTURE_CLOCK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#include <cpuid.h>
#include <x86intrin.h>
#define TF_HAVE_TSC 1
#else
#define TF_HAVE_TSC 0
#endif

static inline long long
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic_ns() on Linux */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int clock_tsc; /* records hold TSC ticks */
static const char *clock_name = "monotonic";

/* A record's timestamp, in the unit of clock_tsc. */
static inline long long
clock_now(void)
{
#if TF_HAVE_TSC
    if (clock_tsc) {
        return (long long)__rdtsc();
    }
#endif
    return mono_ns();
}

typedef struct {
    long long tick, ns;
} SyncPoint;

#define NSYNC 128
static SyncPoint syncs[NSYNC];
static int nsync;

#if TF_HAVE_TSC
/* A tick and the monotonic time read together: the tick halfway between two
 * readings around the clock's, from the tightest of a few tries (a try that a
 * preemption or an interrupt split apart is discarded). */
static SyncPoint
sync_read(void)
{
    SyncPoint best = {0, 0};
    long long spread = -1;
    for (int i = 0; i < 4; i++) {
        long long before = (long long)__rdtsc();
        long long ns = mono_ns();
        long long after = (long long)__rdtsc();
        if (spread < 0 || after - before < spread) {
            spread = after - before;
            best.tick = before + (after - before) / 2;
            best.ns = ns;
        }
    }
    return best;
}

static int
tsc_usable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007) {
        return 0;
    }
    __get_cpuid(0x80000007, &a, &b, &c, &d);
    if (!(d & (1u << 8))) {
        return 0; /* not invariant: it may stop or change rate */
    }
    /* The kernel keeps time with it only if it found it stable and in step
     * across CPUs. */
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL) {
        return 0;
    }
    char line[32] = {0};
    int ok = fgets(line, sizeof(line), f) != NULL && strncmp(line, "tsc\n", 4) == 0;
    fclose(f);
    return ok;
}
#endif

/* At import: choose the clock, and take the first sync point. */
static void
clock_init(void)
{
#if TF_HAVE_TSC
    const char *env = getenv("TRACEDFUTURE_CLOCK");
    if ((env == NULL || strcmp(env, "monotonic") != 0) && tsc_usable()) {
        clock_tsc = 1;
        clock_name = "tsc";
        syncs[0] = sync_read();
        nsync = 1;
    }
#endif
}

/* Before records are read: a sync point for now, so that every record already
 * written lies between two (the GIL is held: records are written under it). */
static void
clock_sync(void)
{
#if TF_HAVE_TSC
    if (!clock_tsc) {
        return;
    }
    SyncPoint now = sync_read();
    if (nsync > 0 && now.tick <= syncs[nsync - 1].tick) {
        return;
    }
    if (nsync > 0 && now.ns < syncs[nsync - 1].ns) {
        now.ns = syncs[nsync - 1].ns; /* never backwards */
    }
    if (nsync == NSYNC) {
        /* Full: every other point of the older half goes (the first stays),
         * its segments twice as long. */
        int half = NSYNC / 2, k = 1;
        for (int i = 2; i < half; i += 2) {
            syncs[k++] = syncs[i];
        }
        for (int i = half; i < NSYNC; i++) {
            syncs[k++] = syncs[i];
        }
        nsync = k;
    }
    syncs[nsync++] = now;
#endif
}

/* The sync points as they are now, for converting without the GIL (Ring.take_batch
 * copies records with the GIL released; clock_sync() may change the table
 * meanwhile, on another thread). */
typedef struct {
    int n, at; /* at: the segment the last record fell in (records come in order) */
    SyncPoint p[NSYNC];
} ClockCopy;

static inline void
clock_copy(ClockCopy *c)
{
    c->n = nsync;
    c->at = 0;
    memcpy(c->p, syncs, (size_t)nsync * sizeof(SyncPoint));
}

/* A timestamp as monotonic nanoseconds, from sync points p[0..n). *at starts
 * the search: a batch's records lie mostly in one segment, the last. */
static inline long long
clock_convert(const SyncPoint *p, int n, int *at, long long t)
{
    int lo = *at;
    if (!(lo < n && p[lo].tick <= t && (lo + 1 >= n || t < p[lo + 1].tick))) {
        /* the last sync point at or before t (a record before the first: the first) */
        int hi = n - 1;
        lo = 0;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (p[mid].tick <= t) {
                lo = mid;
            }
            else {
                hi = mid - 1;
            }
        }
        *at = lo;
    }
    const SyncPoint *a = &p[lo];
    if (lo + 1 >= n) {
        if (lo == 0) {
            return a->ns; /* one point only: no rate known, and no record after it */
        }
        a = &p[lo - 1]; /* past the last point: its segment's rate */
    }
    const SyncPoint *b = a + 1;
    double rate = (double)(b->ns - a->ns) / (double)(b->tick - a->tick);
    return a->ns + (long long)((double)(t - a->tick) * rate);
}

/* A record's timestamp as monotonic nanoseconds. Call clock_sync() first. */
static inline long long
clock_to_ns(long long t)
{
    if (!clock_tsc) {
        return t;
    }
    int at = nsync - 1;
    return clock_convert(syncs, nsync, &at, t);
}

/* The same, from a copy (any thread, the GIL released or not). */
static inline long long
clock_copy_to_ns(ClockCopy *c, long long t)
{
    if (!clock_tsc) {
        return t;
    }
    return clock_convert(c->p, c->n, &c->at, t);
}

#endif
