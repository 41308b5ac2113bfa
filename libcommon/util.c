// util: error reporting, checked allocation and I/O, atomic output files (see util.h).
// Owns no format. The cleanup table is the only global state; it is touched from signal handlers,
// so entries are written before they are published and only unlink() runs in the handler.
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *prog_name = "?";

// Temporary paths not yet committed, as a list that only grows at its head: a node is complete before it is
// published, and committing clears its path instead of unlinking the node, so a signal handler walking the list
// never sees a half-made node. Nodes are reused once their path is cleared.
typedef struct OutNode {
    char *volatile tmp;
    struct OutNode *next;
} OutNode;
static OutNode *volatile out_head;

static void out_cleanup(void)
{
    for (OutNode *n = out_head; n; n = n->next)
        if (n->tmp) unlink(n->tmp);
}

static void on_signal(int sig)
{
    out_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

void util_init(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    prog_name = slash ? slash + 1 : (argv0 ? argv0 : "?");
    atexit(out_cleanup);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        // a signal the parent set to be ignored (SIGINT of a background job) stays ignored
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

static void vmsg(const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    // one line only: a stray newline in a subject (a file name) must not split the message
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s: %s\n", prog_name, line);
}

noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    exit(1);
}

noreturn void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (try '%s --help')\n", prog_name, line, prog_name);
    exit(2);
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

int err_set(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

// ---- allocation -----------------------------------------------------------------------------

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes", n);
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

char *xvasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) die("out of memory formatting a string");
    return s;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

void xgrow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) die("out of memory: %zu elements of %zu bytes", need, elem);
        c *= 2;
    }
    *p = xrealloc(*p, c * elem);
    *cap = c;
}

// ---- input ----------------------------------------------------------------------------------

int read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, char *err)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        if (fd != STDIN_FILENO) close(fd);
        return err_set(err, "%s", strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        if (fd != STDIN_FILENO) close(fd);
        return err_set(err, "is a directory");
    }
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) {
        if (fd != STDIN_FILENO) close(fd);
        return err_set(err, "file too large (%lld bytes, limit %zu)", (long long)st.st_size, max_bytes);
    }
    uint8_t *b = xmalloc(cap);
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) break;
            cap *= 2;
            b = xrealloc(b, cap);
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(b);
            if (fd != STDIN_FILENO) close(fd);
            return err_set(err, "%s", strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (fd != STDIN_FILENO) close(fd);
    if (n > max_bytes) {
        free(b);
        return err_set(err, "file too large (over %zu bytes)", max_bytes);
    }
    *buf = b;
    *len = n;
    return 0;
}

// ---- atomic output --------------------------------------------------------------------------

OutFile *out_open(const char *path)
{
    size_t n = strlen(path);
    char *tmp = xmalloc(n + 16);
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        die("cannot create output: '%s': %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    OutNode *node = NULL;
    for (OutNode *q = out_head; q; q = q->next)
        if (!q->tmp) {
            node = q;
            break;
        }
    if (!node) {
        node = xcalloc(1, sizeof *node);
        node->next = out_head;
        out_head = node; // published complete (its path is still NULL)
    }
    node->tmp = tmp; // the signal handler may unlink it from now on
    OutFile *o = xcalloc(1, sizeof *o);
    o->fp = fdopen(fd, "wb");
    if (!o->fp) die("cannot open output: '%s': %s", path, strerror(errno));
    o->path = xstrdup(path);
    o->tmp_path = tmp;
    o->node = node;
    return o;
}

// Flushes, fsyncs and closes o; its file stays uncommitted. Any failure dies (removing every uncommitted file).
static void out_sync(OutFile *o)
{
    // The data may have been written through ->fp or, by a library, through ->tmp_path:
    // fsync on a fresh descriptor covers both.
    if (o->fp) {
        if (fflush(o->fp) != 0 || ferror(o->fp)) die("cannot write output: '%s': %s", o->path, strerror(errno));
        if (fclose(o->fp) != 0) die("cannot write output: '%s': %s", o->path, strerror(errno));
        o->fp = NULL;
    }
    int fd = open(o->tmp_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) die("cannot write output: '%s': %s", o->path, strerror(errno));
    close(fd);
}

static void out_free(OutFile *o)
{
    ((OutNode *)o->node)->tmp = NULL;
    free(o->tmp_path);
    free(o->path);
    free(o);
}

void out_commit(OutFile *o)
{
    out_sync(o);
    if (rename(o->tmp_path, o->path) != 0) die("cannot rename output into place: '%s': %s", o->path, strerror(errno));
    out_free(o);
}

void out_commit_all(OutFile **o, size_t n)
{
    for (size_t i = 0; i < n; i++) out_sync(o[i]);
    for (size_t i = 0; i < n; i++) { // what would fail a rename, found before the first
        struct stat st;
        if (stat(o[i]->path, &st) == 0 && S_ISDIR(st.st_mode))
            die("cannot rename output into place: '%s': %s", o[i]->path, strerror(EISDIR));
    }
    // From here to the last rename a signal waits, and each file already in place is kept as a hard link
    // (its temporary's name + ".old") until every rename is done, so that a failing rename puts the earlier ones
    // back. Where no link can be made (a filesystem without them), that file is replaced without the undo.
    sigset_t block, mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT), sigaddset(&block, SIGTERM), sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &mask);
    char **old = xcalloc(n ? n : 1, sizeof *old);
    bool *fresh = xcalloc(n ? n : 1, sizeof *fresh); // no file was there: the undo removes the new one
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(o[i]->tmp_path) + 5;
        old[i] = xmalloc(len);
        snprintf(old[i], len, "%s.old", o[i]->tmp_path);
        if (link(o[i]->path, old[i]) != 0) fresh[i] = errno == ENOENT, free(old[i]), old[i] = NULL;
    }
    const char *hook = getenv("HMT_TEST_SIGNAL_IN_COMMIT"); // tests/cli/test_tools.sh: SIGTERM after the first
    for (size_t i = 0; i < n; i++) {
        if (rename(o[i]->tmp_path, o[i]->path) == 0) {
            if (i == 0 && hook) raise(SIGTERM);
            continue;
        }
        int e = errno;
        for (size_t j = 0; j < n; j++) {
            if (j < i && old[j]) rename(old[j], o[j]->path);
            else if (j < i && fresh[j]) unlink(o[j]->path);
            if (old[j]) unlink(old[j]); // (gone once renamed back, unless two outputs shared a path)
        }
        die("cannot rename output into place: '%s': %s", o[i]->path, strerror(e));
    }
    for (size_t i = 0; i < n; i++) {
        if (old[i]) unlink(old[i]);
        free(old[i]);
        out_free(o[i]);
    }
    free(old), free(fresh);
    sigprocmask(SIG_SETMASK, &mask, NULL); // a signal that waited is taken now, with every file in place
}

void out_close_stream(OutFile *o)
{
    if (o->fp && (fflush(o->fp) != 0 || ferror(o->fp) || fclose(o->fp) != 0))
        die("cannot write output: '%s': %s", o->path, strerror(errno));
    o->fp = NULL;
}

void out_abort(OutFile *o)
{
    if (o->fp) fclose(o->fp);
    unlink(o->tmp_path);
    ((OutNode *)o->node)->tmp = NULL;
    free(o->tmp_path);
    free(o->path);
    free(o);
}

void xfwrite(const void *p, size_t size, size_t n, FILE *fp, const char *what)
{
    if (n && fwrite(p, size, n, fp) != n) die("write failed: '%s': %s", what, strerror(errno));
}

void stdout_close(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) die("write failed: 'stdout': %s", strerror(errno));
}

// ---- option values --------------------------------------------------------------------------

long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) die_usage("invalid value for %s: '%s': not an integer", opt, s);
    if (v < lo || v > hi) die_usage("invalid value for %s: '%s': must be in %ld..%ld", opt, s, lo, hi);
    return v;
}

double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die_usage("invalid value for %s: '%s': not a number", opt, s);
    if (v < lo || v > hi) die_usage("invalid value for %s: '%s': must be in %g..%g", opt, s, lo, hi);
    return v;
}

static int parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    double mul = 1;
    switch (*end) {
    case 'T': case 't': mul *= 1024; /* fallthrough */
    case 'G': case 'g': mul *= 1024; /* fallthrough */
    case 'M': case 'm': mul *= 1024; /* fallthrough */
    case 'K': case 'k': mul *= 1024; end++; break;
    case 0: break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul >= 0x1p63) return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

// The first number in file (a line "max" or a missing file: UINT64_MAX).
static uint64_t read_u64(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long v;
    int ok = f && fscanf(f, "%llu", &v) == 1;
    if (f) fclose(f);
    return ok ? (uint64_t)v : UINT64_MAX;
}

uint64_t mem_available(const char **source)
{
    const char *env = getenv("HMT_MEMORY_LIMIT");
    uint64_t v;
    if (env && *env) {
        if (parse_bytes(env, &v) < 0) die("bad HMT_MEMORY_LIMIT: '%s': expected bytes, e.g. 8G or 500M", env);
        if (source) *source = "HMT_MEMORY_LIMIT";
        return v;
    }
    uint64_t avail = UINT64_MAX;
    const char *src = "unknown";
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (uint64_t)kb * 1024, src = "MemAvailable";
    if (f) fclose(f);
    uint64_t max = read_u64("/sys/fs/cgroup/memory.max"), cur = read_u64("/sys/fs/cgroup/memory.current");
    if (max != UINT64_MAX && cur != UINT64_MAX && max - (cur < max ? cur : max) < avail)
        avail = max - (cur < max ? cur : max), src = "the cgroup's memory.max";
    if (source) *source = src;
    return avail;
}

const char *fmt_bytes(double b, char *buf, size_t n)
{
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.0f MiB", b / (1024.0 * 1024));
    else if (b >= 1024) snprintf(buf, n, "%.0f KiB", b / 1024);
    else snprintf(buf, n, "%.0f B", b);
    return buf;
}

int n_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median_sort(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void json_write_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(fp, "\\%c", *p);
        else if (*p < 0x20) fprintf(fp, "\\u%04x", *p);
        else fputc(*p, fp);
    }
    fputc('"', fp);
}

char *run_dir_path(const char *path)
{
    char *real = realpath(path, NULL);
    struct stat st;
    if (!real || stat(real, &st) != 0) return free(real), NULL;
    if (!S_ISDIR(st.st_mode)) {
        char *slash = strrchr(real, '/');
        if (slash) *(slash == real ? slash + 1 : slash) = 0;
    }
    return real;
}

uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// ---- input paths --------------------------------------------------------------------------------

void pathlist_push(PathList *p, char *s)
{
    xgrow((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v);
    p->v[p->n++] = s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_ext(const char *name, const char *const exts[])
{
    size_t n = strlen(name);
    for (int i = 0; exts[i]; i++) {
        size_t k = strlen(exts[i]);
        if (n > k && strcasecmp(name + n - k, exts[i]) == 0) return 1;
    }
    return 0;
}

static void walk(const char *dir, const char *const exts[], PathList *out, int depth)
{
    if (depth > 64) {
        warn("skipping folder: '%s': nested too deep", dir);
        return;
    }
    DIR *d = opendir(dir);
    if (!d) {
        warn("cannot open folder: '%s': %s", dir, strerror(errno));
        return;
    }
    PathList names = {0};
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') pathlist_push(&names, xstrdup(e->d_name));
    closedir(d);
    if (names.n) qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        size_t n = strlen(dir) + strlen(names.v[i]) + 2;
        char *path = xmalloc(n);
        snprintf(path, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", names.v[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            walk(path, exts, out, depth + 1);
            free(path);
        } else if (has_ext(names.v[i], exts)) {
            pathlist_push(out, path);
        } else {
            free(path);
        }
        free(names.v[i]);
    }
    free(names.v);
}

void path_walk(const char *dir, const char *const exts[], PathList *out) { walk(dir, exts, out, 0); }

char *path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

const char *path_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

int file_copy(const char *src, const char *dst, char *err)
{
    uint8_t *buf;
    size_t len;
    if (read_file(src, 1u << 30, &buf, &len, err) < 0) return -1;
    char *p = xstrdup(dst);
    for (char *c = p + 1; *c; c++) { // mkdir -p of the folders above dst
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) die("cannot create folder: '%s': %s", p, strerror(errno));
        *c = '/';
    }
    free(p);
    OutFile *o = out_open(dst);
    xfwrite(buf, 1, len, o->fp, dst);
    out_commit(o);
    free(buf);
    return 0;
}
