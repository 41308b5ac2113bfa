// util: the one error style, checked allocation and I/O, and atomic output files.
// Every tool calls util_init() first. die() prints "prog: message" and exits 1, die_usage() exits 2;
// both, an atexit handler and SIGINT/SIGTERM/SIGHUP remove every output file not yet committed.
// Does not own any file format.
#ifndef UTIL_H
#define UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdnoreturn.h>

#define ERR_MAX 256 // size of the char err[] buffers that fallible functions fill

extern const char *prog_name;

// Sets prog_name from argv[0] and installs the exit/signal handlers that remove uncommitted outputs.
void util_init(const char *argv0);

// "prog: <message>" on stderr, remove uncommitted outputs, exit 1 (runtime) or 2 (usage; the line ends with
// "(try 'prog --help')").
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// "prog: <message>" on stderr, continue.
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Formats into err (ERR_MAX bytes) and returns -1, for functions that report failure to their caller.
int err_set(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Allocation that dies with a clear message instead of returning NULL.
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
// A malloc'd string formatted as printf does (any length).
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);
// Grows *p (elements of size elem, capacity *cap) to hold at least need elements; doubles.
void xgrow(void **p, size_t *cap, size_t need, size_t elem);

// Reads a whole file ("-" is stdin) into a fresh buffer (caller frees). Refuses files over max_bytes.
// Returns 0, or -1 with err set ("reason" only; the caller names the file).
int read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, char *err);

// ---- atomic output files -------------------------------------------------------------------
// out_open creates "path.tmp.XXXXXX" in the target directory (mkstemp) and records it; writes go to ->fp.
// out_commit flushes, fsyncs, closes and renames it onto path; any failure dies (and removes it).
// A file not committed when the process exits or dies by SIGINT/SIGTERM/SIGHUP is unlinked.
// For libraries that insist on a file name (libsmf), write to ->tmp_path and commit as usual.
typedef struct OutFile {
    FILE *fp;
    char *path;
    char *tmp_path;
    void *node; // its entry in the cleanup list
} OutFile;

OutFile *out_open(const char *path);
void out_commit(OutFile *o);
// Commits n outputs together: all of them, or (an error, a signal) none, the files that were there left as they
// were. A process killed outright (SIGKILL, power) in the renames may still leave some renamed.
void out_commit_all(OutFile **o, size_t n);
// Closes ->fp early (checked), keeping the file uncommitted: for callers holding many outputs until the end.
void out_close_stream(OutFile *o);
// Removes the temporary file and forgets it (an abandoned output).
void out_abort(OutFile *o);

// The canonical absolute path of a run directory, as the registry's runs.out_dir records it: path itself when it
// is a folder, else the folder holding the file. malloc'd; NULL when the path does not exist.
char *run_dir_path(const char *path);

// fwrite that dies naming what was being written on a short write.
void xfwrite(const void *p, size_t size, size_t n, FILE *fp, const char *what);
// Flushes stdout and dies with "stdout: write failed: reason" if anything failed.
void stdout_close(void);

// ---- parsing of option values: whole string, range-checked; die_usage naming the option ---------
long parse_long(const char *opt, const char *s, long lo, long hi);
double parse_double(const char *opt, const char *s, double lo, double hi);

// Bytes of memory this process may still take: $HMT_MEMORY_LIMIT when set (bytes, or with a K, M, G or T
// suffix: for tests and for sharing a machine), else the smaller of MemAvailable (/proc/meminfo) and the
// cgroup's memory.max - memory.current. *source (if not NULL) says which. UINT64_MAX when nothing tells.
uint64_t mem_available(const char **source);
// "1.25 GiB", "512 MiB", "300 KiB", "12 B" into buf.
const char *fmt_bytes(double bytes, char *buf, size_t n);

// Number of online CPUs (at least 1).
int n_cpus(void);
// Monotonic seconds.
double now_s(void);
// The median of t[0..n), n >= 1 (for even n the upper middle): sorts t in place. The benchmarks' timings.
double median_sort(double *t, int n);

// FNV-1a 64-bit, seedable by chaining (pass the previous hash as h; start with FNV_INIT).
#define FNV_INIT 0xcbf29ce484222325ULL
// splitmix64's finaliser of x + golden ratio: the counter-based hash behind every seeded stream (windows,
// dropout seeds, sampling), so a stream's draw i is a pure function of (seed, i).
uint64_t splitmix64(uint64_t x);
uint64_t fnv1a(uint64_t h, const void *p, size_t n);

// Writes s as a JSON string literal (quotes and escapes included).
void json_write_string(FILE *fp, const char *s);

// ---- input paths: files named on the command line and folders searched ------------------------
typedef struct PathList {
    char **v; // malloc'd paths
    size_t n, cap;
} PathList;
// Appends s (taking ownership).
void pathlist_push(PathList *p, char *s);
// The folder of path, malloc'd: "." when path has no '/', "/" for a file at the root.
char *path_dir(const char *path);
// The last component of path (a pointer into it): what follows the last '/', or path itself when it has no '/' or
// ends in one.
const char *path_base(const char *path);
// Copies the file src to dst, creating dst's missing folders; dst is an output file (out_open/out_commit:
// written atomically, and a failure to create or write it dies). Returns 0, or -1 with err when src cannot be
// read (the reason, not the path; files over 1 GiB are refused).
int file_copy(const char *src, const char *dst, char *err);
// Appends the files under dir whose names end in one of exts (a NULL-terminated list such as {".mid", NULL},
// compared case-insensitively), recursively, in byte order of the names at every level; names starting with '.'
// are skipped. A folder that cannot be opened, or one nested over 64 deep, is reported with warn() and skipped.
void path_walk(const char *dir, const char *const exts[], PathList *out);

#endif
