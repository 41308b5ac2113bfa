// midi2remi: MIDI files -> REMI token documents (spec/formats.md §1-2), token for token as MidiTok 3.0.0.
// Files are converted by -j worker threads in batches; documents are written in input order.
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doc.h"
#include "midi.h"
#include "miditok.h"
#include "remi.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: midi2remi [options] [FILE|DIR|-]...\n"
           "Convert MIDI files to REMI token documents (NAME<TAB>TOKENS, one per line) on stdout.\n"
           "Folders are searched recursively for *.mid and *.midi; '-' reads one MIDI file from stdin;\n"
           "with no arguments, MIDI file paths are read from stdin, one per line.\n"
           "\n"
           "  --ids        print token ids instead of token strings (default: strings)\n"
           "  --vocab      print the vocabulary (id<TAB>token) and exit\n"
           "  --miditok-tokenizer FILE\n"
           "               write MidiTok 3.0.0's tokenizer file for this vocabulary to FILE (- = stdout;\n"
           "               miditok.REMI(params=FILE) then has the same token ids) and exit\n"
           "  -j N         worker threads, 1..256 (default: number of CPUs, %d here)\n"
           "  -q           no progress line on stderr (default: progress when stderr is a terminal)\n"
           "  -h, --help   show this help\n"
           "\n"
           "A file that cannot be converted is reported on stderr ('name: reason') and skipped.\n"
           "Exit status: 0 all converted, 1 some skipped or an I/O error, 2 usage error.\n",
           n_cpus());
}

// ---- inputs ---------------------------------------------------------------------------------

typedef struct Job {
    char *path;
    char *out; // the document line, or NULL on failure
    size_t out_len;
    char err[ERR_MAX];
    size_t n_tokens;
} Job;

// ---- conversion -----------------------------------------------------------------------------

static bool opt_ids;

static void convert(Job *j)
{
    j->out = NULL;
    if (doc_check_name(j->path, j->err) < 0) return;
    Score s;
    if (midi_read_score(j->path, &s, j->err) < 0) return;
    IdBuf ids = {0};
    int rc = remi_encode(&s, &ids, j->err);
    score_free(&s);
    if (rc == 0) {
        size_t cap = 0;
        j->out_len = 0;
        doc_format(&j->out, &j->out_len, &cap, j->path, ids.ids, ids.n, opt_ids);
        j->n_tokens = ids.n;
    }
    free(ids.ids);
}

typedef struct Pool {
    Job *jobs;
    size_t n;
    atomic_size_t next;
} Pool;

static void *worker(void *arg)
{
    Pool *p = arg;
    for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;) convert(&p->jobs[i]);
    return NULL;
}

#define BATCH 512

static const char *const midi_exts[] = {".mid", ".midi", NULL};

int main(int argc, char **argv)
{
    util_init(argv[0]);
    int n_threads = n_cpus();
    bool quiet = false;
    PathList paths = {0};
    bool from_stdin_list = true, only_operands = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_operands && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            usage();
            return 0;
        } else if (!only_operands && strcmp(a, "--vocab") == 0) {
            if (argc != 2) die_usage("--vocab takes no other argument");
            for (int id = 0; id < REMI_VOCAB_SIZE; id++) printf("%d\t%s\n", id, remi_token_str(id));
            stdout_close();
            return 0;
        } else if (!only_operands && strcmp(a, "--miditok-tokenizer") == 0) {
            if (i + 1 >= argc) die_usage("option --miditok-tokenizer needs a value");
            if (argc != 3) die_usage("--miditok-tokenizer takes no other argument");
            const char *path = argv[i + 1];
            if (!*path) die_usage("option --miditok-tokenizer needs a file name");
            OutFile *o = strcmp(path, "-") ? out_open(path) : NULL;
            miditok_write_params(o ? o->fp : stdout);
            if (o) out_commit(o);
            else stdout_close();
            return 0;
        } else if (!only_operands && strcmp(a, "--ids") == 0) {
            opt_ids = true;
        } else if (!only_operands && strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (!only_operands && strncmp(a, "-j", 2) == 0) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) die_usage("option -j needs a value");
            n_threads = (int)parse_long("-j", v, 1, 256);
        } else if (!only_operands && strcmp(a, "--") == 0) {
            only_operands = true;
        } else if (!only_operands && a[0] == '-' && a[1]) {
            die_usage("unknown option: '%s'", a);
        } else {
            from_stdin_list = false;
            struct stat st;
            if (strcmp(a, "-") != 0 && stat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
                size_t before = paths.n;
                path_walk(a, midi_exts, &paths);
                if (paths.n == before) die("no MIDI file (*.mid, *.midi) in folder '%s'", a); // a wrong folder
            } else {
                pathlist_push(&paths, xstrdup(a));
            }
        }
    }
    if (from_stdin_list && isatty(STDIN_FILENO))
        die_usage("no input: give MIDI files or folders, or pipe MIDI paths on stdin");
    if (!quiet) quiet = !isatty(STDERR_FILENO);

    Job *jobs = xcalloc(BATCH, sizeof *jobs);
    size_t next_path = 0, n_done = 0, n_failed = 0, n_tokens = 0;
    char *line = NULL;
    size_t line_cap = 0;
    double t0 = now_s();
    for (;;) {
        size_t n = 0; // fill a batch, from the arguments or from stdin
        while (n < BATCH) {
            if (!from_stdin_list) {
                if (next_path == paths.n) break;
                jobs[n++].path = paths.v[next_path++];
            } else {
                ssize_t len = getline(&line, &line_cap, stdin);
                if (len < 0) break;
                if (len && line[len - 1] == '\n') line[--len] = '\0';
                if (len && line[len - 1] == '\r') line[--len] = '\0'; // a list with CRLF line ends
                if (len == 0) continue;
                jobs[n++].path = xstrdup(line);
            }
        }
        if (n == 0) break;
        Pool pool = {jobs, n, 0};
        int nt = n_threads < (int)n ? n_threads : (int)n;
        pthread_t th[256];
        for (int t = 1; t < nt; t++)
            if (pthread_create(&th[t], NULL, worker, &pool) != 0) die("cannot start a worker thread");
        worker(&pool);
        for (int t = 1; t < nt; t++) pthread_join(th[t], NULL);
        for (size_t i = 0; i < n; i++) {
            Job *j = &jobs[i];
            if (j->out) {
                xfwrite(j->out, 1, j->out_len, stdout, "stdout");
                n_tokens += j->n_tokens;
                free(j->out);
            } else {
                fprintf(stderr, "%s: %s: %s\n", prog_name, j->path, j->err);
                n_failed++;
            }
            free(j->path);
        }
        n_done += n;
        if (!quiet)
            fprintf(stderr, "\r%s: %zu files, %zu tokens, %zu skipped, %.1f s", prog_name, n_done, n_tokens,
                    n_failed, now_s() - t0);
    }
    if (!quiet) fputc('\n', stderr);
    stdout_close();
    free(line);
    free(jobs);
    free(paths.v);
    return n_failed ? 1 : 0;
}
