// shard: token documents on stdin (or a file) -> train/val/test shard files and a manifest (spec/formats.md §3).
// The split of a document depends only on its name and --seed; empty documents are left out and counted, and so
// are documents whose tokens equal an earlier document's (the first is kept; shard.h's content hash).
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doc.h"
#include "miditok.h"
#include "remi.h"
#include "shard.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: shard -o DIR [options] [FILE|-]\n"
           "       shard -o DIR --miditok [options] PATH...\n"
           "       shard --dump SHARD.bin [--ids]\n"
           "Split token documents (NAME<TAB>TOKENS, from FILE or stdin) into DIR/train.bin, DIR/val.bin,\n"
           "DIR/test.bin and DIR/manifest.json. A document's split depends only on its file name (the last\n"
           "component of NAME) and the seed. Empty documents and exact duplicates (the same tokens as an\n"
           "earlier document, whatever its name) are left out and counted.\n"
           "\n"
           "  -o DIR       output folder, created if missing (required)\n"
           "  --val R      share of documents for validation, 0..1 (default 0.05)\n"
           "  --test R     share of documents for test, 0..1 (default 0.05)\n"
           "  --seed N     split seed, 0..2^62 (default 1)\n"
           "  --keep-duplicates      keep documents whose tokens equal an earlier document's (default: drop them\n"
           "                         and count them in the manifest's duplicates_skipped)\n"
           "  --transposed-duplicates  also drop documents that equal an earlier one transposed (the same notes\n"
           "                         in another key; drums and chord qualities as they are) (default: off)\n"
           "  --miditok    read MidiTok JSON token files ({\"ids\": [...]}, one song each, as MidiTok's\n"
           "               tokenize_midi_dataset writes them with the tokenizer of midi2remi --miditok-tokenizer)\n"
           "               instead of token documents; folders are searched for *.json (tokenizer.json\n"
           "               skipped); each file is a document named after its path\n"
           "  -q           no summary on stderr\n"
           "  --dump FILE  print the documents of a shard file as token documents on stdout, and exit\n"
           "  --ids        with --dump, print token ids instead of token strings\n"
           "  -h, --help   show this help\n"
           "\n"
           "Exit status: 0 success, 1 bad input or I/O error (no output is left behind), 2 usage error.\n");
}

// What was left out of the shards, for the manifest and the summary.
typedef struct Skipped {
    long empty, duplicates, transposed;
} Skipped;

// The manifest, written and left uncommitted: it goes into place with the shards, all or none.
static OutFile *write_manifest(const char *dir, uint64_t seed, double val, double test, const ShardWriter *w,
                               const Skipped *sk)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    OutFile *o = out_open(path);
    FILE *f = o->fp;
    fprintf(f, "{\n  \"format\": \"hmt-shards\",\n  \"version\": %d,\n", SHARD_VERSION);
    fprintf(f, "  \"vocab_size\": %d,\n  \"vocab_hash\": \"%016llx\",\n", REMI_VOCAB_SIZE,
            (unsigned long long)remi_vocab_hash());
    fprintf(f, "  \"split_seed\": %llu,\n", (unsigned long long)seed);
    fprintf(f, "  \"ratios\": {\"train\": %.6g, \"val\": %.6g, \"test\": %.6g},\n", 1 - val - test, val, test);
    fprintf(f, "  \"empty_documents_skipped\": %ld,\n", sk->empty);
    fprintf(f, "  \"duplicates_skipped\": %ld,\n  \"transposed_duplicates_skipped\": %ld,\n", sk->duplicates,
            sk->transposed);
    fprintf(f, "  \"splits\": {\n");
    for (int s = 0; s < 3; s++)
        fprintf(f, "    \"%s\": {\"file\": \"%s.bin\", \"documents\": %lld, \"tokens\": %lld}%s\n", split_names[s],
                split_names[s], (long long)w[s].n_docs, (long long)w[s].n_tokens, s < 2 ? "," : "");
    fprintf(f, "  }\n}\n");
    return o;
}

// Prints every document of a shard file as NAME<TAB>TOKENS.
static int dump(const char *path, bool as_ids)
{
    Shard sh;
    char err[ERR_MAX];
    if (shard_open(&sh, path, err) < 0) die("cannot read shard: '%s': %s", path, err);
    if (sh.vocab_hash != remi_vocab_hash()) die("cannot read shard: '%s': built with another vocabulary", path);
    IdBuf ids = {0};
    char *buf = NULL;
    size_t cap = 0;
    for (int64_t d = 0; d < sh.n_docs; d++) {
        ids.n = 0;
        for (int64_t i = sh.offsets[d]; i < sh.offsets[d + 1]; i++) idbuf_push(&ids, sh.tokens[i]);
        size_t len = 0;
        doc_format(&buf, &len, &cap, sh.names[d], ids.ids, ids.n, as_ids);
        xfwrite(buf, 1, len, stdout, "stdout");
    }
    free(buf);
    free(ids.ids);
    shard_close(&sh);
    stdout_close();
    return 0;
}

// What a document must pass to be kept: not empty, not a repeat of an earlier one (unless kept), and what was
// left out, counted for the manifest and the summary.
typedef struct Filter {
    int keep_dups, transposed;
    ShardDedup exact, moved; // the contents seen so far, as they are and transposed
    Skipped sk;
} Filter;

// Adds one document to its split's writer, or counts why it is left out; special tokens are refused (src, where:
// for the message).
static void add_doc(ShardWriter w[3], const char *name, const IdBuf *ids, uint64_t seed, double val, double test,
                    Filter *f, const char *src, const char *where)
{
    if (ids->n == 0) {
        f->sk.empty++;
        return;
    }
    for (size_t i = 0; i < ids->n; i++)
        if (ids->ids[i] < REMI_BAR)
            die("bad document: '%s': %s: special token '%s' inside a document", src, where,
                remi_token_str(ids->ids[i]));
    uint64_t h[2];
    if (!f->keep_dups) {
        shard_doc_hash(ids->ids, ids->n, 0, h);
        if (shard_dedup_add(&f->exact, h)) {
            f->sk.duplicates++;
            return;
        }
    }
    if (f->transposed) {
        shard_doc_hash(ids->ids, ids->n, 1, h);
        if (shard_dedup_add(&f->moved, h)) {
            f->sk.transposed++;
            return;
        }
    }
    Split s = shard_split_of(name, seed, val, test);
    shard_writer_add(&w[s], name, ids->ids, ids->n);
}

// Adds every MidiTok token file of paths as a document named after its path.
static void add_miditok(const PathList *paths, ShardWriter w[3], uint64_t seed, double val, double test, Filter *f)
{
    IdBuf ids = {0};
    char err[ERR_MAX];
    for (size_t i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        if (doc_check_name(p, err) < 0) die("bad file name: '%s': %s", p, err);
        ids.n = 0;
        if (miditok_read_ids(p, &ids, err) < 0) die("cannot read MidiTok tokens: '%s': %s", p, err);
        add_doc(w, p, &ids, seed, val, test, f, p, "\"ids\"");
    }
    free(ids.ids);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *dir = NULL, *input = "-";
    double val = 0.05, test = 0.05;
    uint64_t seed = 1;
    int quiet = 0, n_inputs = 0, keep_dups = 0, transposed = 0;
    const char *dump_path = NULL;
    bool as_ids = false, miditok = false;
    PathList inputs = {0}, paths = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--val") == 0 || strcmp(a, "--test") == 0 ||
                   strcmp(a, "--seed") == 0) {
            if (!next) die_usage("option %s needs a value", a);
            i++;
            if (a[1] == 'o') dir = next;
            else if (strcmp(a, "--val") == 0) val = parse_double(a, next, 0, 1);
            else if (strcmp(a, "--test") == 0) test = parse_double(a, next, 0, 1);
            else seed = (uint64_t)parse_long(a, next, 0, 1L << 62);
        } else if (strcmp(a, "--dump") == 0) {
            if (!next) die_usage("option --dump needs a value");
            dump_path = argv[++i];
        } else if (strcmp(a, "--keep-duplicates") == 0) {
            keep_dups = 1;
        } else if (strcmp(a, "--transposed-duplicates") == 0) {
            transposed = 1;
        } else if (strcmp(a, "--ids") == 0) {
            as_ids = true;
        } else if (strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--miditok") == 0) {
            miditok = true;
        } else if (a[0] == '-' && a[1]) {
            die_usage("unknown option: '%s'", a);
        } else {
            input = a;
            n_inputs++;
            pathlist_push(&inputs, xstrdup(a));
        }
    }
    if (n_inputs > 1 && !miditok) die_usage("more than one input file");
    if (miditok && dump_path) die_usage("--miditok does not go with --dump");
    if (miditok && n_inputs == 0) die_usage("--miditok needs files or folders of MidiTok token files");
    if (dump_path && (dir || n_inputs)) die_usage("--dump reads one shard file: no -o DIR or other input");
    if (as_ids && !dump_path) die_usage("--ids goes with --dump");
    if (keep_dups && transposed) die_usage("--transposed-duplicates drops duplicates: it cannot go with --keep-duplicates");
    if (dump_path) return dump(dump_path, as_ids);
    if (!dir) die_usage("an output folder is required (-o DIR)");
    if (val + test > 1) die_usage("--val + --test is %g, above 1", val + test);
    if (miditok) { // every file is found before any output is opened: a missing one is an error up front
        static const char *const exts[] = {".json", NULL};
        for (size_t i = 0; i < inputs.n; i++) {
            struct stat st;
            if (stat(inputs.v[i], &st) != 0) die("cannot open: '%s': %s", inputs.v[i], strerror(errno));
            if (!S_ISDIR(st.st_mode)) {
                pathlist_push(&paths, inputs.v[i]);
                continue;
            }
            PathList found = {0};
            path_walk(inputs.v[i], exts, &found);
            for (size_t k = 0; k < found.n; k++) {
                if (strcmp(path_base(found.v[k]), "tokenizer.json") == 0) free(found.v[k]);
                else pathlist_push(&paths, found.v[k]);
            }
            free(found.v);
            free(inputs.v[i]);
        }
    } else {
        for (size_t i = 0; i < inputs.n; i++) free(inputs.v[i]);
    }
    free(inputs.v);
    if (miditok && paths.n == 0) die("no MidiTok token files (*.json) in the folders given");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) die("cannot create folder: '%s': %s", dir, strerror(errno));

    FILE *in = NULL;
    if (!miditok && !(in = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb")))
        die("cannot open: '%s': %s", input, strerror(errno));
    OutFile *out[4]; // the three splits, then the manifest
    ShardWriter w[3];
    char path[4096];
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, split_names[s]);
        out[s] = out_open(path);
        shard_writer_init(&w[s], out[s]->fp, out[s]->path);
    }
    Filter filt = {.keep_dups = keep_dups, .transposed = transposed};
    if (miditok) {
        add_miditok(&paths, w, seed, val, test, &filt);
    } else {
        DocReader r;
        doc_reader_init(&r, in, input);
        Doc d = {0};
        char err[ERR_MAX];
        int rc;
        while ((rc = doc_read(&r, &d, err)) > 0) {
            char where[64];
            snprintf(where, sizeof where, "line %ld", r.line);
            add_doc(w, d.name, &d.ids, seed, val, test, &filt, input, where);
        }
        if (rc < 0) die("cannot read documents: '%s': %s", strcmp(input, "-") ? input : "stdin", err);
        free(d.ids.ids);
        doc_reader_free(&r);
    }
    for (int s = 0; s < 3; s++) shard_writer_finish(&w[s], remi_vocab_hash(), REMI_VOCAB_SIZE);
    out[3] = write_manifest(dir, seed, val, test, w, &filt.sk);
    out_commit_all(out, 4); // a set of shards is used together: never part of a new one beside an old one
    if (!quiet) {
        fprintf(stderr, "%s: %s: train %lld, val %lld, test %lld documents (%lld tokens); %ld empty, %ld duplicates",
                prog_name, dir, (long long)w[0].n_docs, (long long)w[1].n_docs, (long long)w[2].n_docs,
                (long long)(w[0].n_tokens + w[1].n_tokens + w[2].n_tokens), filt.sk.empty, filt.sk.duplicates);
        if (transposed) fprintf(stderr, ", %ld transposed duplicates", filt.sk.transposed);
        fprintf(stderr, " skipped\n");
    }
    shard_dedup_free(&filt.exact), shard_dedup_free(&filt.moved);
    if (in && in != stdin) fclose(in);
    for (size_t i = 0; i < paths.n; i++) free(paths.v[i]);
    free(paths.v);
    return 0;
}
