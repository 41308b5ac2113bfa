// shard: writing, validating and mapping token shards; the split rule (see shard.h). Owns the shard format.
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remi.h"
#include "util.h"

const char *const split_names[3] = {"train", "val", "test"};

Split shard_split_of(const char *name, uint64_t seed, double val_ratio, double test_ratio)
{
    uint8_t s[8];
    for (int i = 0; i < 8; i++) s[i] = (uint8_t)(seed >> (8 * i));
    const char *base = path_base(name); // the file name only: the same song splits alike from any folder
    uint64_t h = fnv1a(fnv1a(FNV_INIT, s, 8), base, strlen(base));
    h ^= h >> 33; // FNV's high bits mix poorly on short inputs: finish with a murmur-style avalanche
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    double u = (double)(h >> 11) * 0x1p-53; // uniform in [0, 1)
    if (u < test_ratio) return SPLIT_TEST;
    if (u < test_ratio + val_ratio) return SPLIT_VAL;
    return SPLIT_TRAIN;
}

static void put64(int32_t *h, int slot, uint64_t v)
{
    h[slot] = (int32_t)(uint32_t)v;
    h[slot + 1] = (int32_t)(uint32_t)(v >> 32);
}

static uint64_t get64(const int32_t *h, int slot) { return (uint64_t)(uint32_t)h[slot] | (uint64_t)(uint32_t)h[slot + 1] << 32; }

void shard_writer_init(ShardWriter *w, FILE *fp, const char *path)
{
    memset(w, 0, sizeof *w);
    w->fp = fp;
    w->path = path;
    int32_t zero[SHARD_HEADER_INTS] = {0}; // placeholder, rewritten by shard_writer_finish
    xfwrite(zero, sizeof zero, 1, fp, path);
    xgrow((void **)&w->offsets, &w->cap_offsets, 1, sizeof *w->offsets);
    w->offsets[0] = 0;
}

void shard_writer_add(ShardWriter *w, const char *name, const int32_t *ids, size_t n)
{
    uint16_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t m = 0;
        while (m < 4096 && i < n) buf[m++] = (uint16_t)ids[i++];
        xfwrite(buf, sizeof *buf, m, w->fp, w->path);
    }
    w->n_tokens += (int64_t)n;
    w->n_docs++;
    xgrow((void **)&w->offsets, &w->cap_offsets, (size_t)w->n_docs + 1, sizeof *w->offsets);
    w->offsets[w->n_docs] = w->n_tokens;
    size_t l = strlen(name) + 1;
    xgrow((void **)&w->names, &w->names_cap, w->names_len + l, 1);
    memcpy(w->names + w->names_len, name, l);
    w->names_len += l;
}

void shard_writer_finish(ShardWriter *w, uint64_t vocab_hash, int vocab_size)
{
    int64_t tok_end = (int64_t)sizeof(int32_t) * SHARD_HEADER_INTS + 2 * w->n_tokens;
    int64_t pad = (8 - tok_end % 8) % 8; // offsets start 8-byte aligned, so a reader can use them in place
    static const uint8_t zeros[8];
    xfwrite(zeros, 1, (size_t)pad, w->fp, w->path);
    int64_t offsets_at = tok_end + pad;
    xfwrite(w->offsets, sizeof *w->offsets, (size_t)w->n_docs + 1, w->fp, w->path);
    int64_t names_at = offsets_at + 8 * (w->n_docs + 1);
    xfwrite(w->names, 1, w->names_len, w->fp, w->path);
    int32_t h[SHARD_HEADER_INTS] = {0};
    h[SHARD_H_MAGIC] = SHARD_MAGIC;
    h[SHARD_H_VERSION] = SHARD_VERSION;
    h[SHARD_H_VOCAB_SIZE] = vocab_size;
    h[SHARD_H_TOKEN_BYTES] = 2;
    put64(h, SHARD_H_VOCAB_HASH, vocab_hash);
    put64(h, SHARD_H_N_DOCS, (uint64_t)w->n_docs);
    put64(h, SHARD_H_N_TOKENS, (uint64_t)w->n_tokens);
    put64(h, SHARD_H_OFFSETS_AT, (uint64_t)offsets_at);
    put64(h, SHARD_H_NAMES_AT, (uint64_t)names_at);
    put64(h, SHARD_H_NAMES_BYTES, (uint64_t)w->names_len);
    if (fseek(w->fp, 0, SEEK_SET) != 0) die("cannot seek: '%s': %s", w->path, strerror(errno));
    xfwrite(h, sizeof h, 1, w->fp, w->path);
    free(w->offsets);
    free(w->names);
}

// ---- duplicates ------------------------------------------------------------------------------------
void shard_doc_hash(const int32_t *ids, size_t n, int transposed, uint64_t out[2])
{
    uint64_t a = fnv1a(FNV_INIT, &n, sizeof n), b = splitmix64(n ^ 0x5bd1e995ULL);
    int base = -1, drum = 0; // base: the first pitched note's pitch; drum: the last Program token was -1
    for (size_t i = 0; i < n; i++) {
        int32_t t = ids[i];
        if (remi_is_program(t)) drum = t == REMI_PROGRAM0;
        if (transposed && remi_is_pitch(t) && !drum) {
            if (base < 0) base = t;
            t = 1000 + t - base; // an interval, outside the token ids
        }
        uint16_t u = (uint16_t)t; // intervals fit: |t - base| < 88
        a = fnv1a(a, &u, sizeof u);
        b = splitmix64(b ^ ((uint64_t)u << 17 | (uint64_t)i));
    }
    out[0] = a, out[1] = b;
    if (!out[0] && !out[1]) out[1] = 1; // (0, 0) marks an empty slot
}

int shard_dedup_add(ShardDedup *d, const uint64_t h[2])
{
    if (2 * (d->n + 1) > d->cap) { // keep the load at most 1/2: rehash into twice the slots
        size_t cap = d->cap ? 2 * d->cap : 1024;
        uint64_t *keys = xcalloc(2 * cap, sizeof *keys);
        for (size_t i = 0; i < d->cap; i++) {
            const uint64_t *k = d->keys + 2 * i;
            if (!k[0] && !k[1]) continue;
            size_t j = (size_t)(k[0] & (cap - 1));
            while (keys[2 * j] || keys[2 * j + 1]) j = (j + 1) & (cap - 1);
            keys[2 * j] = k[0], keys[2 * j + 1] = k[1];
        }
        free(d->keys);
        d->keys = keys, d->cap = cap;
    }
    size_t j = (size_t)(h[0] & (d->cap - 1));
    for (;; j = (j + 1) & (d->cap - 1)) {
        uint64_t *k = d->keys + 2 * j;
        if (!k[0] && !k[1]) break;
        if (k[0] == h[0] && k[1] == h[1]) return 1;
    }
    d->keys[2 * j] = h[0], d->keys[2 * j + 1] = h[1];
    d->n++;
    return 0;
}

void shard_dedup_free(ShardDedup *d)
{
    free(d->keys);
    memset(d, 0, sizeof *d);
}

// ---- reading ------------------------------------------------------------------------------------
// shard_open (full) and shard_map (header and offsets only).
static int open_shard(Shard *s, const char *path, int full, char *err)
{
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_set(err, "%s", strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) { // (mmap would say "No such device")
        close(fd);
        return err_set(err, "%s", S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
    }
    size_t len = (size_t)st.st_size;
    if (len < sizeof(int32_t) * SHARD_HEADER_INTS) {
        close(fd);
        return err_set(err, "not a shard file (too short for the header)");
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return err_set(err, "cannot map: %s", strerror(errno));
    s->map = map;
    s->map_len = len;
    const int32_t *h = map;
    int rc = 0;
    if (h[SHARD_H_MAGIC] != SHARD_MAGIC) {
        rc = err_set(err, "not a shard file (bad magic)");
        goto out;
    }
    if (h[SHARD_H_VERSION] != SHARD_VERSION) {
        rc = err_set(err, "shard format version %d, this build reads %d", h[SHARD_H_VERSION], SHARD_VERSION);
        goto out;
    }
    s->vocab_size = h[SHARD_H_VOCAB_SIZE];
    s->vocab_hash = get64(h, SHARD_H_VOCAB_HASH);
    s->n_docs = (int64_t)get64(h, SHARD_H_N_DOCS);
    s->n_tokens = (int64_t)get64(h, SHARD_H_N_TOKENS);
    uint64_t off_at = get64(h, SHARD_H_OFFSETS_AT), names_at = get64(h, SHARD_H_NAMES_AT);
    uint64_t names_bytes = get64(h, SHARD_H_NAMES_BYTES);
    uint64_t hdr = sizeof(int32_t) * SHARD_HEADER_INTS;
    if (h[SHARD_H_TOKEN_BYTES] != 2 || s->vocab_size <= 0 || s->vocab_size > 65536 || s->n_docs < 0 ||
        s->n_tokens < 0 || (uint64_t)s->n_tokens > (len - hdr) / 2 || off_at > len || off_at < hdr + 2 * (uint64_t)s->n_tokens ||
        off_at % 8 || (uint64_t)s->n_docs >= (len - off_at) / 8 || names_at != off_at + 8 * ((uint64_t)s->n_docs + 1) ||
        names_at > len || names_bytes != len - names_at) {
        rc = err_set(err, "corrupt shard: sizes in the header do not match the file (%zu bytes)", len);
        goto out;
    }
    s->tokens = (const uint16_t *)((const char *)map + hdr);
    s->offsets = (const int64_t *)((const char *)map + off_at);
    if (s->offsets[0] != 0 || s->offsets[s->n_docs] != s->n_tokens) {
        rc = err_set(err, "corrupt shard: document offsets do not cover the tokens");
        goto out;
    }
    for (int64_t d = 0; d < s->n_docs; d++)
        if (s->offsets[d + 1] < s->offsets[d]) {
            rc = err_set(err, "corrupt shard: document %lld has a negative length", (long long)d);
            goto out;
        }
    s->names_blob = (const char *)map + names_at, s->names_bytes = names_bytes;
    if (!full) {
        if (s->n_docs > 0 && (names_bytes == 0 || s->names_blob[names_bytes - 1] != '\0'))
            rc = err_set(err, "corrupt shard: the names do not end with a NUL");
        goto out;
    }
    for (int64_t i = 0; i < s->n_tokens; i++)
        if (s->tokens[i] >= s->vocab_size) {
            rc = err_set(err, "corrupt shard: token %lld is %d, vocabulary has %d", (long long)i, s->tokens[i],
                         s->vocab_size);
            goto out;
        }
    s->names = xmalloc(((size_t)s->n_docs + 1) * sizeof *s->names);
    const char *p = (const char *)map + names_at, *end = p + names_bytes;
    for (int64_t d = 0; d < s->n_docs; d++) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z) {
            rc = err_set(err, "corrupt shard: %lld names for %lld documents", (long long)d, (long long)s->n_docs);
            goto out;
        }
        s->names[d] = p;
        p = z + 1;
    }
out:
    if (rc < 0) shard_close(s);
    return rc;
}

int shard_open(Shard *s, const char *path, char *err) { return open_shard(s, path, 1, err); }
int shard_map(Shard *s, const char *path, char *err) { return open_shard(s, path, 0, err); }

void shard_close(Shard *s)
{
    if (s->map) munmap(s->map, s->map_len);
    free(s->names);
    memset(s, 0, sizeof *s);
}
