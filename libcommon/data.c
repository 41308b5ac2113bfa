// data: training and evaluation windows over a shard, the fixed validation subset, augmentation (see data.h).
#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "remi.h"
#include "util.h"

// Pages of a copied window are dropped in blocks of this alignment: the kernel maps cached pages around a fault
// (fault-around, 64 KiB by default), and dropping whole aligned blocks takes those too.
#define RELEASE_ALIGN ((uintptr_t)1 << 18)

int data_open(DataSet *ds, const char *path, int L, uint64_t vocab_hash, int flags, char *err)
{
    memset(ds, 0, sizeof *ds);
    char serr[ERR_MAX];
    int lazy = (flags & DATA_LAZY) != 0;
    if ((lazy ? shard_map : shard_open)(&ds->shard, path, serr) < 0) return err_set(err, "'%s': %s", path, serr);
    const Shard *s = &ds->shard;
    if (s->vocab_hash != vocab_hash) {
        shard_close(&ds->shard);
        return err_set(err, "'%s': built with another vocabulary (hash %016llx, this program's %016llx)", path,
                       (unsigned long long)s->vocab_hash, (unsigned long long)vocab_hash);
    }
    if (s->n_docs == 0) {
        shard_close(&ds->shard);
        return err_set(err, "'%s': no documents", path);
    }
    ds->path = path, ds->L = L, ds->lazy = lazy;
    // training windows land anywhere: no read-ahead around them
    if (lazy && (flags & DATA_TRAIN)) madvise(ds->shard.map, ds->shard.map_len, MADV_RANDOM);
    if (flags & DATA_TRAIN) {
        ds->start_cum = xmalloc((size_t)(s->n_docs + 1) * sizeof *ds->start_cum);
        ds->start_cum[0] = 0;
        for (int64_t d = 0; d < s->n_docs; d++) {
            int64_t m = s->offsets[d + 1] - s->offsets[d] + 2; // framed length
            ds->start_cum[d + 1] = ds->start_cum[d] + (m > L + 1 ? m - L : 1);
        }
        ds->n_starts = ds->start_cum[s->n_docs];
    }
    if (flags & DATA_EVAL) return data_limit_eval(ds, 0, err);
    return 0;
}

void data_close(DataSet *ds)
{
    shard_close(&ds->shard);
    free(ds->start_cum), free(ds->eval_cum), free(ds->eval_docs);
    memset(ds, 0, sizeof *ds);
}

// ---- the evaluated documents ---------------------------------------------------------------------
// A hash of a document's file name, fixed for all runs: the order in which the subset takes documents.
static uint64_t name_rank(const char *name)
{
    const char *base = path_base(name);
    uint64_t h = fnv1a(fnv1a(FNV_INIT, "val-subset", 10), base, strlen(base));
    return splitmix64(h);
}

typedef struct Ranked {
    uint64_t rank;
    int64_t doc;
} Ranked;

static int by_rank(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int data_limit_eval(DataSet *ds, int64_t max_targets, char *err)
{
    const Shard *s = &ds->shard;
    int64_t n = s->n_docs, total = s->n_tokens + s->n_docs; // every document's targets: its tokens and EOS
    free(ds->eval_docs), free(ds->eval_cum);
    ds->eval_docs = NULL;
    if (max_targets > 0 && max_targets < total) {
        Ranked *r = xmalloc((size_t)n * sizeof *r);
        const char *p = s->names_blob, *end = p + s->names_bytes;
        for (int64_t d = 0; d < n; d++) {
            const char *z = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
            if (!z) {
                free(r);
                return err_set(err, "'%s': corrupt shard: %lld names for %lld documents", ds->path, (long long)d,
                               (long long)n);
            }
            r[d] = (Ranked){name_rank(p), d};
            p = z + 1;
        }
        qsort(r, (size_t)n, sizeof *r, by_rank);
        int64_t k = 0, got = 0;
        while (k < n && got < max_targets) got += s->offsets[r[k].doc + 1] - s->offsets[r[k].doc] + 1, k++;
        ds->eval_docs = xmalloc((size_t)k * sizeof *ds->eval_docs);
        for (int64_t j = 0; j < k; j++) ds->eval_docs[j] = r[j].doc;
        free(r);
        qsort(ds->eval_docs, (size_t)k, sizeof *ds->eval_docs, by_value);
        n = k;
    }
    ds->n_eval_docs = n;
    ds->eval_cum = xmalloc((size_t)(n + 1) * sizeof *ds->eval_cum);
    ds->eval_cum[0] = 0, ds->n_targets = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t d = ds->eval_docs ? ds->eval_docs[j] : j, m = s->offsets[d + 1] - s->offsets[d] + 2;
        ds->eval_cum[j + 1] = ds->eval_cum[j] + (m - 1 + ds->L - 1) / ds->L;
        ds->n_targets += m - 1;
    }
    ds->n_eval = ds->eval_cum[n];
    return 0;
}

// ---- windows ----------------------------------------------------------------------------------------
// The j such that cum[j] <= x < cum[j + 1] (binary search).
static int64_t find_doc(const int64_t *cum, int64_t n, int64_t x)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (cum[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// Framed document d from framed position p: L + 1 tokens, PAD past EOS. A lazily mapped shard's token ids are
// checked here, and the window's pages are dropped from the process once copied (they stay in the page cache).
static void copy_window(const DataSet *ds, int64_t d, int64_t p, int32_t *out)
{
    const Shard *s = &ds->shard;
    int64_t n = s->offsets[d + 1] - s->offsets[d];
    const uint16_t *tok = s->tokens + s->offsets[d];
    int64_t p0 = p;
    for (int i = 0; i <= ds->L; i++, p++) {
        if (p < 1 || p > n) {
            out[i] = p == 0 ? REMI_BOS : p == n + 1 ? REMI_EOS : REMI_PAD;
            continue;
        }
        out[i] = tok[p - 1];
        if (ds->lazy && out[i] >= s->vocab_size) // a shard read whole had every id checked when it was opened
            die("corrupt shard: '%s': document %lld holds token %d, the vocabulary has %d", ds->path, (long long)d,
                out[i], s->vocab_size);
    }
    if (!ds->lazy) return;
    int64_t first = p0 > 0 ? p0 - 1 : 0, last = p0 + ds->L < n ? p0 + ds->L : n; // tok[first .. last)
    uintptr_t base = (uintptr_t)s->map, lo = (uintptr_t)(tok + first), hi = (uintptr_t)(tok + last);
    lo = lo & ~(RELEASE_ALIGN - 1), hi = (hi + RELEASE_ALIGN - 1) & ~(RELEASE_ALIGN - 1);
    if (lo < base) lo = base;
    if (hi > base + s->map_len) hi = base + s->map_len;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

// The program in force at framed position p of document d: the last Program token among the three before it (a
// note is Program Pitch Velocity Duration), 0 (pitched) when there is none.
static int program_before(const DataSet *ds, int64_t d, int64_t p)
{
    const Shard *s = &ds->shard;
    const uint16_t *tok = s->tokens + s->offsets[d];
    for (int64_t q = p - 1; q >= 1 && q >= p - 3; q--) // framed q is tok[q - 1]
        if (remi_is_program(tok[q - 1])) return remi_program(tok[q - 1]);
    return 0;
}

void data_train_window(const DataSet *ds, uint64_t seed, uint64_t i, const DataAugment *aug, int32_t *out)
{
    // uniform in [0, n_starts) by rejection of the top partial range, so no start is favoured
    uint64_t n = (uint64_t)ds->n_starts, limit = UINT64_MAX - UINT64_MAX % n, x;
    uint64_t k = 0;
    do x = splitmix64(splitmix64(seed) ^ splitmix64(i * 0x100000001b3ULL + k++));
    while (x >= limit);
    int64_t start = (int64_t)(x % n);
    int64_t d = find_doc(ds->start_cum, ds->shard.n_docs, start), p = start - ds->start_cum[d];
    copy_window(ds, d, p, out);
    if (!aug) return;
    int pitch, velocity;
    data_augment_draw(aug, seed, i, &pitch, &velocity);
    if (pitch || velocity) data_augment_window(out, ds->L + 1, program_before(ds, d, p), pitch, velocity);
}

void data_eval_window(const DataSet *ds, int64_t k, int32_t *out)
{
    int64_t j = find_doc(ds->eval_cum, ds->n_eval_docs, k);
    copy_window(ds, ds->eval_docs ? ds->eval_docs[j] : j, (k - ds->eval_cum[j]) * ds->L, out);
}

// ---- augmentation ------------------------------------------------------------------------------------
// Uniform integer in [lo, hi] from the 64-bit draw x (the bias of x % span is below 2^-56 for spans under 256).
static int in_range(uint64_t x, int lo, int hi) { return lo + (int)(x % (uint64_t)(hi - lo + 1)); }

void data_augment_draw(const DataAugment *a, uint64_t seed, uint64_t i, int *pitch, int *velocity)
{
    uint64_t s = splitmix64(seed ^ 0x6175676d656e74ULL); // "augment": a stream apart from the windows'
    *pitch = in_range(splitmix64(s ^ splitmix64(2 * i)), a->pitch_lo, a->pitch_hi);
    *velocity = in_range(splitmix64(s ^ splitmix64(2 * i + 1)), a->velocity_lo, a->velocity_hi);
}

int data_augment_window(int32_t *w, int n, int prev_program, int pitch, int velocity)
{
    // the window's pitched notes: their lowest and highest Pitch ids, then the offset clamped to fit them
    int drum = prev_program == -1, lo = REMI_VELOCITY0, hi = REMI_PITCH0 - 1;
    for (int t = 0; t < n; t++) {
        if (remi_is_program(w[t])) drum = w[t] == REMI_PROGRAM0;
        else if (remi_is_pitch(w[t]) && !drum)
            lo = w[t] < lo ? w[t] : lo, hi = w[t] > hi ? w[t] : hi;
    }
    if (hi >= lo) {
        if (pitch > REMI_VELOCITY0 - 1 - hi) pitch = REMI_VELOCITY0 - 1 - hi;
        if (pitch < REMI_PITCH0 - lo) pitch = REMI_PITCH0 - lo;
    }
    drum = prev_program == -1;
    for (int t = 0; t < n; t++) {
        int32_t v = w[t];
        if (remi_is_program(v)) drum = v == REMI_PROGRAM0;
        else if (drum) continue;
        else if (remi_is_pitch(v)) w[t] = v + pitch;
        else if (remi_is_velocity(v)) {
            int b = v - REMI_VELOCITY0 + velocity;
            w[t] = REMI_VELOCITY0 + (b < 0 ? 0 : b > 15 ? 15 : b);
        }
    }
    return pitch;
}
