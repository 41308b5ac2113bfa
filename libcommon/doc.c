// doc: reading and writing token documents (see doc.h). Owns the document line format.
#include "doc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void doc_reader_init(DocReader *r, FILE *fp, const char *path)
{
    memset(r, 0, sizeof *r);
    r->fp = fp;
    r->path = path;
}

void doc_reader_free(DocReader *r) { free(r->buf); }

// Next line, NUL-terminated and without its newline, in *line (*n bytes). 1, 0 at EOF, -1 with err.
static int next_line(DocReader *r, char **line, size_t *n, char *err)
{
    for (;;) {
        char *nl = r->pos < r->len ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl || (r->eof && r->pos < r->len)) {
            char *start = r->buf + r->pos;
            char *end = nl ? nl : r->buf + r->len;
            // room for the terminator is guaranteed: the buffer keeps one spare byte
            *end = '\0';
            *line = start;
            *n = (size_t)(end - start);
            r->pos = (size_t)(end - r->buf) + 1;
            r->line++;
            return 1;
        }
        if (r->eof) return 0;
        if (r->pos > 0) { // move the partial line to the front
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len + 1 >= r->cap) {
            if (r->cap >= DOC_MAX_LINE) return err_set(err, "line %ld: longer than %u bytes", r->line + 1, DOC_MAX_LINE);
            r->cap = r->cap ? 2 * r->cap : 1 << 16;
            r->buf = xrealloc(r->buf, r->cap);
        }
        // read(2), not fread: a document is returned as soon as its line is complete, however slow the pipe
        // (streams without a descriptor, such as fmemopen's, go through fread)
        int fd = fileno(r->fp);
        ssize_t got = fd >= 0 ? read(fd, r->buf + r->len, r->cap - r->len - 1)
                              : (ssize_t)fread(r->buf + r->len, 1, r->cap - r->len - 1, r->fp);
        if (fd < 0 && got == 0 && ferror(r->fp)) got = -1;
        if (got < 0) {
            if (errno == EINTR) continue;
            return err_set(err, "read failed: %s", strerror(errno));
        }
        r->len += (size_t)got;
        if (got == 0) r->eof = true;
    }
}

int doc_read(DocReader *r, Doc *d, char *err)
{
    char *line;
    size_t n;
    int rc;
    do {
        rc = next_line(r, &line, &n, err);
        if (rc <= 0) return rc;
        if (n && line[n - 1] == '\r') line[--n] = '\0';
    } while (n == 0);
    char *tab = memchr(line, '\t', n);
    if (!tab) return err_set(err, "line %ld: no TAB between the name and the tokens", r->line);
    if (tab == line) return err_set(err, "line %ld: empty document name", r->line);
    if (memchr(line, '\0', (size_t)(tab - line))) // (C strings would cut the name there)
        return err_set(err, "line %ld: a document name may not contain a NUL byte", r->line);
    *tab = '\0';
    d->name = line;
    d->ids.n = 0;
    char *p = tab + 1, *end = line + n;
    while (p < end) {
        while (p < end && *p == ' ') p++;
        if (p == end) break;
        char *q = p;
        while (q < end && *q != ' ') q++;
        int id = -1;
        if (*p >= '0' && *p <= '9') {
            long v = 0;
            char *c = p;
            while (c < q && *c >= '0' && *c <= '9' && v < REMI_VOCAB_SIZE) v = v * 10 + (*c++ - '0');
            if (c == q && v < REMI_VOCAB_SIZE) id = (int)v;
        } else {
            id = remi_token_id(p, (size_t)(q - p));
        }
        if (id < 0) {
            int len = (int)(q - p) > 40 ? 40 : (int)(q - p);
            return err_set(err, "line %ld: unknown token '%.*s%s'", r->line, len, p, q - p > 40 ? "..." : "");
        }
        idbuf_push(&d->ids, id);
        p = q;
    }
    return 1;
}

static void reserve(char **buf, size_t *cap, size_t need)
{
    if (need > *cap) xgrow((void **)buf, cap, need, 1);
}

void doc_format(char **buf, size_t *len, size_t *cap, const char *name, const int32_t *ids, size_t n, bool as_ids)
{
    size_t nl = strlen(name);
    reserve(buf, cap, *len + nl + 2 + n * 24);
    char *p = *buf + *len;
    memcpy(p, name, nl);
    p += nl;
    *p++ = '\t';
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ' ';
        if (as_ids) {
            int v = ids[i];
            if (v >= 100) *p++ = (char)('0' + v / 100);
            if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
        } else {
            int l = remi_token_len(ids[i]);
            memcpy(p, remi_token_str(ids[i]), (size_t)l);
            p += l;
        }
    }
    *p++ = '\n';
    *len = (size_t)(p - *buf);
}

int doc_check_name(const char *name, char *err)
{
    if (!*name) return err_set(err, "empty document name");
    if (strpbrk(name, "\t\r\n")) return err_set(err, "a document name may not contain a TAB, CR or newline");
    return 0;
}

void doc_file_stem(const char *name, char stem[DOC_STEM_MAX])
{
    const char *base = path_base(name);
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    if (n > 200) n = 200;
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        stem[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                          c == '_' || (c == '.' && i > 0)
                      ? c
                      : '_';
    }
    stem[n] = '\0';
    if (n == 0) snprintf(stem, DOC_STEM_MAX, "doc");
}

// Inserts s (taking ownership) unless present; returns whether it was inserted.
static bool names_add(DocNames *ns, char *s)
{
    if (2 * (ns->n + 1) > ns->cap) {
        DocNames bigger = {xcalloc(ns->cap ? 2 * ns->cap : 64, sizeof(char *)), ns->cap ? 2 * ns->cap : 64, 0};
        for (size_t i = 0; i < ns->cap; i++)
            if (ns->slot[i]) names_add(&bigger, ns->slot[i]);
        free(ns->slot);
        *ns = bigger;
    }
    size_t h = fnv1a(FNV_INIT, s, strlen(s)) & (ns->cap - 1);
    for (; ns->slot[h]; h = (h + 1) & (ns->cap - 1))
        if (strcmp(ns->slot[h], s) == 0) return false;
    ns->slot[h] = s;
    ns->n++;
    return true;
}

char *doc_unique_name(DocNames *names, const char *stem)
{
    char *cand = xstrdup(stem);
    for (int k = 2; !names_add(names, cand); k++) {
        free(cand);
        cand = xasprintf("%s-%d", stem, k);
    }
    return xstrdup(cand);
}

void doc_names_free(DocNames *names)
{
    for (size_t i = 0; i < names->cap; i++) free(names->slot[i]);
    free(names->slot);
    *names = (DocNames){0};
}
