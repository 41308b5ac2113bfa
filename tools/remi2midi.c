// remi2midi: REMI token documents -> MIDI files (spec/remi.md §6, spec/formats.md §1).
// One document -> -o FILE; several -> -O DIR, one file per document named after it. Ill-formed documents decode
// as far as they make sense and the skipped tokens are counted on stderr; an unknown token is an error.
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doc.h"
#include "midi.h"
#include "remi.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: remi2midi (-o FILE | -O DIR) [options] [FILE|-]\n"
           "Decode REMI token documents (NAME<TAB>TOKENS, token strings or ids; from FILE or stdin) to MIDI.\n"
           "\n"
           "  -o FILE      write the one document of the input to FILE ('-': stdout)\n"
           "  -O DIR       write each document to DIR/<name>.mid (DIR is created if missing);\n"
           "               <name> is the document name's last component without its extension\n"
           "  -q           do not report skipped tokens\n"
           "  -h, --help   show this help\n"
           "\n"
           "Files appear only once the whole input has decoded: an error anywhere leaves no output.\n"
           "Tokens that break the REMI grammar (a Pitch without Velocity and Duration, a stray Velocity or\n"
           "Duration, special tokens) are skipped and counted on stderr. An unknown token is an error.\n"
           "Exit status: 0 success, 1 bad input or I/O error, 2 usage error.\n");
}

// ---- output names for -O --------------------------------------------------------------------

// Writes s to a temporary file for path, left uncommitted (and closed) for the caller.
static OutFile *write_midi(const char *path, const Score *s)
{
    char err[ERR_MAX];
    OutFile *o = out_open(path);
    out_close_stream(o); // libsmf writes through the temporary's name
    if (midi_write_score(s, o->tmp_path, err) < 0) die("cannot write MIDI: '%s': %s", path, err);
    return o;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *out_file = NULL, *out_dir = NULL, *input = "-";
    bool quiet = false;
    int n_inputs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "-O") == 0) {
            if (i + 1 >= argc) die_usage("option %s needs a value", a);
            if (a[1] == 'o') out_file = argv[++i];
            else out_dir = argv[++i];
        } else if (strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            die_usage("unknown option: '%s'", a);
        } else {
            input = a;
            if (++n_inputs > 1) die_usage("more than one input file");
        }
    }
    if (!out_file == !out_dir) die_usage("give exactly one of -o FILE and -O DIR");
    // -o -: libsmf writes only to a named file, so a temporary one (removed at exit) is copied to stdout
    bool to_stdout = out_file && strcmp(out_file, "-") == 0;
    char tmp_path[4096];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmp_path, sizeof tmp_path, "%s/remi2midi-stdout.mid", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (out_dir && mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        die("cannot create folder: '%s': %s", out_dir, strerror(errno));
    const char *in_name = strcmp(input, "-") ? input : "stdin";
    FILE *in = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
    if (!in) die("cannot open: '%s': %s", input, strerror(errno));

    DocReader r;
    doc_reader_init(&r, in, input);
    Doc d = {0};
    DocNames used = {0};
    // Outputs are committed only once the whole input has decoded: a bad document anywhere leaves no file.
    OutFile **outs = NULL;
    size_t n_outs = 0, cap_outs = 0;
    char err[ERR_MAX];
    long n_docs = 0;
    int rc;
    while ((rc = doc_read(&r, &d, err)) > 0) {
        if (out_file && n_docs == 1)
            die("several documents in '%s': use -O DIR to write one MIDI file each", in_name);
        Score s;
        size_t skipped;
        remi_decode(d.ids.ids, d.ids.n, &s, &skipped);
        if (skipped && !quiet) warn("%s: skipped %zu of %zu tokens", d.name, skipped, d.ids.n);
        if (out_file) {
            xgrow((void **)&outs, &cap_outs, n_outs + 1, sizeof *outs);
            outs[n_outs++] = write_midi(to_stdout ? tmp_path : out_file, &s);
        } else {
            char base[DOC_STEM_MAX];
            doc_file_stem(d.name, base);
            char *stem = doc_unique_name(&used, base);
            size_t n = strlen(out_dir) + strlen(stem) + 8;
            char *path = xmalloc(n);
            snprintf(path, n, "%s/%s.mid", out_dir, stem);
            free(stem);
            xgrow((void **)&outs, &cap_outs, n_outs + 1, sizeof *outs);
            outs[n_outs++] = write_midi(path, &s);
            free(path);
        }
        score_free(&s);
        n_docs++;
    }
    if (rc < 0) die("cannot read documents: '%s': %s", in_name, err);
    if (n_docs == 0) die("no document in '%s'", in_name);
    if (to_stdout) {
        uint8_t *buf;
        size_t len;
        if (read_file(outs[0]->tmp_path, SIZE_MAX, &buf, &len, err) < 0) die("cannot read back: '%s': %s", tmp_path, err);
        out_abort(outs[0]);
        xfwrite(buf, 1, len, stdout, "stdout");
        stdout_close();
        free(buf);
    } else {
        out_commit_all(outs, n_outs);
    }
    free(outs);
    doc_names_free(&used);
    free(d.ids.ids);
    doc_reader_free(&r);
    if (in != stdin) fclose(in);
    return 0;
}
