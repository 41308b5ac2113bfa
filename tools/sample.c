// sample: a trained model (+ a prompt) -> token documents on stdout (spec/formats.md §1-2), so that
// `sample -m RUN | remi2midi -o out.mid` works. Generation is incremental (libcommon/decode.c, a KV cache through
// every hourglass level) and REMI-aware (libcommon/grammar.c); the sampling rules are in libcommon/sampler.c.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config.h"
#include "decode.h"
#include "doc.h"
#include "midi.h"
#include "ops.h"
#include "registry.h"
#include "remi.h"
#include "sampler.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: sample -m RUN_DIR|MODEL.safetensors [options]\n"
           "Generate token documents (NAME<TAB>TOKENS, one per sample) on stdout, from BOS or after a prompt.\n"
           "The prompt's tokens start each document. Generation stops at EOS or after -n new tokens.\n"
           "  -m, --model PATH        a run directory of train, or its model.safetensors\n"
           "      --prompt FILE       a MIDI file (tokenized as midi2remi does) or a token document (its first)\n"
           "      --prompt-tokens N   keep only the prompt's first N tokens (default: all)\n"
           "  -n N                    new tokens per sample (default 512)\n"
           "      --temperature T     softmax temperature, 0 = greedy (default 1.0)\n"
           "      --top-k K           sample from the K most likely tokens, 0 = all (default 0)\n"
           "      --top-p P           sample from the smallest set with probability >= P (default 1.0)\n"
           "      --seed S            random seed: the same seed gives the same output (default 1)\n"
           "      --num-samples N     samples, generated as one batch (default 1)\n"
           "      --no-grammar        do not mask tokens that cannot follow in a valid REMI document\n"
           "      --name NAME         document names NAME_1, NAME_2, ... (default: sample)\n"
           "      --ids               write token ids instead of token strings\n"
           "  -o, --out FILE          write the documents to FILE (atomically) instead of stdout\n"
           "      --registry FILE     with -o: record the samples in this registry (e.g. %s)\n"
           "  -j, --threads N         threads (default %d: the CPUs)\n"
           "  -q, --quiet             no progress on stderr\n"
           "  -h, --help              this help\n"
           "Exit status: 0 success, 1 bad model, prompt or I/O error (no output is left), 2 usage error.\n",
           REG_DEFAULT_PATH, n_cpus());
}

// The prompt's tokens: a MIDI file (by its "MThd" magic) or the first document of a token file.
static void read_prompt(const char *path, IdBuf *out)
{
    char err[ERR_MAX];
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open prompt: '%s': %s", path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    if (got == 4 && memcmp(magic, "MThd", 4) == 0) {
        fclose(f);
        Score s;
        if (midi_read_score(path, &s, err) < 0) die("cannot read prompt: '%s': %s", path, err);
        if (remi_encode(&s, out, err) < 0) die("cannot tokenize prompt: '%s': %s", path, err);
        score_free(&s);
        return;
    }
    rewind(f);
    DocReader r;
    Doc d = {0};
    doc_reader_init(&r, f, path);
    int rc = doc_read(&r, &d, err);
    if (rc < 0) die("cannot read prompt: '%s': %s", path, err);
    if (rc == 0) die("cannot read prompt: '%s': no document in it", path);
    for (size_t i = 0; i < d.ids.n; i++) {
        if (d.ids.ids[i] < REMI_BAR) die("bad prompt: '%s': special token '%s' inside a document", path, remi_token_str(d.ids.ids[i]));
        idbuf_push(out, d.ids.ids[i]);
    }
    free(d.ids.ids);
    doc_reader_free(&r);
    fclose(f);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *model = NULL, *prompt_path = NULL, *name = "sample", *out_path = NULL, *reg_path = NULL;
    long n_new = 512, prompt_tokens = -1, n_samples = 1;
    int as_ids = 0, quiet = 0, threads = n_cpus();
    SampleOpts o = {.temperature = 1.0, .top_k = 0, .top_p = 1.0, .grammar = 1, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        static const char *const with_value[] = {"-m", "--model", "--prompt", "--prompt-tokens", "-n", "--temperature",
                                                 "--top-k", "--top-p", "--seed", "--num-samples", "--name", "-o",
                                                 "--out", "--registry", "-j", "--threads"};
        int takes = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) takes |= strcmp(a, with_value[k]) == 0;
        if (takes && !v) die_usage("option %s needs a value", a);
        if (takes) i++;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--prompt") == 0) prompt_path = v;
        else if (strcmp(a, "--prompt-tokens") == 0) prompt_tokens = parse_long(a, v, 0, 1L << 30);
        else if (strcmp(a, "-n") == 0) n_new = parse_long(a, v, 1, 1L << 24);
        else if (strcmp(a, "--temperature") == 0) o.temperature = parse_double(a, v, 0, 100);
        else if (strcmp(a, "--top-k") == 0) o.top_k = (int)parse_long(a, v, 0, REMI_VOCAB_SIZE);
        else if (strcmp(a, "--top-p") == 0) o.top_p = parse_double(a, v, 1e-9, 1);
        else if (strcmp(a, "--seed") == 0) o.seed = (uint64_t)parse_long(a, v, 0, 1L << 62);
        else if (strcmp(a, "--num-samples") == 0) n_samples = parse_long(a, v, 1, 4096);
        else if (strcmp(a, "--name") == 0) name = v;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) out_path = v;
        else if (strcmp(a, "--registry") == 0) reg_path = v;
        else if (strcmp(a, "-j") == 0 || strcmp(a, "--threads") == 0) threads = (int)parse_long(a, v, 1, 1024);
        else if (strcmp(a, "--no-grammar") == 0) o.grammar = 0;
        else if (strcmp(a, "--ids") == 0) as_ids = 1;
        else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) quiet = 1;
        else die_usage("unknown option: '%s'", a);
    }
    if (!model) die_usage("a model is required (-m RUN_DIR or -m model.safetensors)");
    if (reg_path && !out_path) die_usage("--registry records sample files: it needs -o FILE");
    char err[ERR_MAX];
    if (doc_check_name(name, err) < 0) die_usage("bad --name: %s", err);
    ops_set_threads(threads); // the pool's threads; OpenBLAS itself runs single-threaded inside them

    RunConfig rc;
    HgModel m;
    if (ckpt_open_model(model, &rc, &m, err) < 0) die("cannot load model: %s", err);
    if (dec_check_memory(&m, (int)n_samples, 0, 0, err) < 0) die("%s", err);
    IdBuf pr = {0};
    if (prompt_path) read_prompt(prompt_path, &pr);
    if (prompt_tokens >= 0 && (size_t)prompt_tokens < pr.n) pr.n = (size_t)prompt_tokens;
    // the window holds input_length tokens: a longer prompt keeps its last ones (BOS then falls out, as in a slide)
    int L = rc.input_length, B = (int)n_samples;
    size_t P = pr.n + 1, skip = P > (size_t)L ? P - (size_t)L : 0;
    int Pw = (int)(P - skip);
    int32_t *prompt = xmalloc((size_t)B * Pw * sizeof *prompt), *gen = xmalloc((size_t)B * n_new * sizeof *gen);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Pw; t++) {
            size_t p = skip + (size_t)t; // position in BOS + prompt
            prompt[(size_t)b * Pw + t] = p == 0 ? REMI_BOS : pr.ids[p - 1];
        }
    int *n_out = xmalloc((size_t)B * sizeof *n_out);
    Decoder *d = dec_new(&m, B, NULL, err);
    if (!d) die("cannot start the decoder: %s", err);
    double t0 = now_s();
    if (sample_generate(d, B, prompt, Pw, (int)n_new, &o, gen, n_out, err) < 0) die("generation failed: %s", err);
    double secs = now_s() - t0;

    OutFile *of = out_path ? out_open(out_path) : NULL;
    FILE *fp = of ? of->fp : stdout;
    char *buf = NULL, dname[512];
    size_t len = 0, cap = 0;
    int32_t *doc = xmalloc((pr.n + (size_t)n_new) * sizeof *doc);
    long total = 0;
    for (int b = 0; b < B; b++) {
        if (pr.n) memcpy(doc, pr.ids, pr.n * sizeof *doc);
        if (n_out[b]) memcpy(doc + pr.n, gen + (size_t)b * n_new, (size_t)n_out[b] * sizeof *doc);
        snprintf(dname, sizeof dname, "%s_%d", name, b + 1);
        len = 0;
        doc_format(&buf, &len, &cap, dname, doc, pr.n + (size_t)n_out[b], as_ids);
        xfwrite(buf, 1, len, fp, out_path ? out_path : "stdout");
        total += n_out[b];
    }
    if (of) out_commit(of);
    else stdout_close();
    if (!quiet)
        fprintf(stderr, "sample: %d document%s, %ld new tokens in %.2f s (%.0f tokens/s), prompt %zu tokens\n", B,
                B == 1 ? "" : "s", total, secs, (double)total / secs, pr.n);
    if (reg_path) {
        Registry *r = reg_open(reg_path, err);
        if (!r) die("%s", err);
        char *dir = run_dir_path(model);
        if (!dir) die("cannot resolve: '%s'", model);
        int64_t run = reg_find_run(r, dir, err);
        if (run < 0 || reg_sample(r, run, out_path, total, (long)o.seed, err) < 0) die("%s", err);
        free(dir);
        reg_close(r);
    }
    free(buf), free(doc), free(prompt), free(gen), free(n_out), free(pr.ids);
    dec_free(d);
    hg_free(&m);
    config_free(&rc);
    return 0;
}
