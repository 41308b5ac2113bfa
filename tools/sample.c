// sample: a trained model (+ prompts) -> token documents on stdout (spec/formats.md §1-2), so that
// `sample -m RUN | remi2midi -o out.mid` works. Generation is incremental (libcommon/decode.c, a KV cache through
// every hourglass level) and REMI-aware (libcommon/grammar.c); the sampling rules are in libcommon/sampler.c.
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
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
           "Generate token documents (NAME<TAB>TOKENS, one per sample) on stdout, from BOS or after prompts.\n"
           "Each prompt's tokens start its documents. Generation stops at EOS or after -n new tokens.\n"
           "  -m, --model PATH        a run directory of train, or its model.safetensors\n"
           "      --prompt PATH       a MIDI file (tokenized as midi2remi does), a token document file (its first\n"
           "                          document) or a folder (its *.mid and *.midi, recursively, sorted as\n"
           "                          midi2remi sorts them); repeatable: every prompt, in order\n"
           "      --prompt-tokens N   keep only each prompt's first N tokens (default: all; a prompt longer than\n"
           "                          the window is seen through its last input_length - 1 tokens)\n"
           "  -n N                    new tokens per sample (default 512; past the window it slides)\n"
           "      --temperature T     softmax temperature, 0 = greedy (default 1.0)\n"
           "      --top-k K           sample from the K most likely tokens, 0 = all (default 0)\n"
           "      --top-p P           sample from the smallest set with probability >= P (default 1.0)\n"
           "      --seed S            random seed: the same seed gives the same output (default 1)\n"
           "      --num-samples N     samples per prompt (default 1)\n"
           "  -b, --batch N           documents generated together (default 8); the output does not depend on it\n"
           "      --no-grammar        do not mask tokens that cannot follow in a valid REMI document\n"
           "      --name NAME         without --prompt: document names NAME_1, NAME_2, ... (default: sample)\n"
           "      --ids               write token ids instead of token strings\n"
           "  -o, --out FILE          write the documents to FILE (atomically) instead of stdout\n"
           "      --registry FILE     with -o: record the samples in this registry (e.g. %s)\n"
           "      --device DEV        cpu (default) or cuda (the first GPU; needs a `make CUDA=1` build)\n"
           "  -j, --threads N         threads (default %d: the CPUs)\n"
           "  -q, --quiet             no progress on stderr\n"
           "  -h, --help              this help\n"
           "With prompts, documents are named after them: the MIDI file's name, or the token document's name, less\n"
           "its folder and extension (\"001\" for dir/001.mid; repeats get -2, -3, ...), with _1, _2, ... when\n"
           "--num-samples > 1; so `sample --prompt DIR | remi2midi -O OUT` writes OUT/001.mid, ...\n"
           "The k-th sample of every prompt draws from random stream k: a prompt continues the same way alone or\n"
           "among others, and whatever the batch.\n"
           "Environment, with --device cuda: HMT_GPU_DECODE_GRAPH=1 replays each token's kernels as a CUDA graph;\n"
           "HMT_GPU_DECODE_BF16=1 reads the linear layers' weights as bfloat16 copies (not the float32 bytes);\n"
           "HMT_GPU_DECODE_FUSED=0 runs the separate kernels the fused ones stand for (the same bytes);\n"
           "HMT_GPU_DECODE_PDL=1 lets each kernel start while the one before still runs (the same bytes);\n"
           "HMT_GPU_DECODE_MEGA=1 runs each token's kernels as one launch with grid barriers (the same bytes;\n"
           "HMT_GPU_DECODE_MEGA_BLOCKS=N: N blocks per multiprocessor, default 1);\n"
           "HMT_GPU_DECODE_DRAW=0 draws each token on the host from the logits instead of on the GPU (the same tokens).\n"
           "Exit status: 0 success, 1 bad model, prompt or I/O error (no output is left), 2 usage error.\n",
           REG_DEFAULT_PATH, n_cpus());
}

typedef struct Prompt {
    char *name; // the documents' name (stem)
    IdBuf ids;  // its tokens, no BOS
} Prompt;

typedef struct Prompts {
    Prompt *v;
    size_t n, cap;
} Prompts;

// "dir/x/001.mid" -> "001": the last component less its extension, TAB/CR/LF as '_', "prompt" if nothing is left.
static char *name_stem(const char *path)
{
    const char *base = path_base(path);
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    if (n == 0) return xstrdup("prompt");
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = base[i] == '\t' || base[i] == '\r' || base[i] == '\n' ? '_' : base[i];
    s[n] = '\0';
    return s;
}

// The prompt's tokens and name: a MIDI file (by its "MThd" magic) or the first document of a token file.
static void read_prompt(const char *path, Prompt *p)
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
        if (remi_encode(&s, &p->ids, err) < 0) die("cannot tokenize prompt: '%s': %s", path, err);
        score_free(&s);
        p->name = name_stem(path);
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
        if (d.ids.ids[i] < REMI_BAR)
            die("bad prompt: '%s': special token '%s' inside a document", path, remi_token_str(d.ids.ids[i]));
        idbuf_push(&p->ids, d.ids.ids[i]);
    }
    p->name = name_stem(d.name);
    free(d.ids.ids);
    doc_reader_free(&r);
    fclose(f);
}

// Adds the prompts of one --prompt argument: a folder's MIDI files, or one file.
static void add_prompts(const char *path, Prompts *ps)
{
    static const char *const midi_exts[] = {".mid", ".midi", NULL};
    PathList files = {0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        path_walk(path, midi_exts, &files); // as midi2remi searches folders
        if (files.n == 0) die("cannot use prompt folder: '%s': no *.mid or *.midi file in it", path);
    } else {
        pathlist_push(&files, xstrdup(path));
    }
    for (size_t i = 0; i < files.n; i++) {
        xgrow((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v);
        Prompt *p = &ps->v[ps->n++];
        *p = (Prompt){0};
        read_prompt(files.v[i], p);
    }
    for (size_t i = 0; i < files.n; i++) free(files.v[i]);
    free(files.v);
}

// Makes the prompts' names unique as remi2midi -O makes its file names: a repeat gets "-2", "-3", ...
static void unique_names(Prompts *ps)
{
    DocNames used = {0};
    for (size_t i = 0; i < ps->n; i++) {
        char *u = doc_unique_name(&used, ps->v[i].name);
        free(ps->v[i].name);
        ps->v[i].name = u;
    }
    doc_names_free(&used);
}

// One document to generate: prompt i's sample k, whose window starts with w tokens (BOS + prompt, or the last L).
typedef struct Item {
    int prompt, k, w;
} Item;

static int cmp_item(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    if (x->prompt != y->prompt) return x->prompt < y->prompt ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *model = NULL, *name = NULL, *out_path = NULL, *reg_path = NULL, **prompt_args = NULL, *device = "cpu";
    size_t n_prompt_args = 0, cap_prompt_args = 0;
    long n_new = 512, prompt_tokens = -1, n_samples = 1, batch = 8;
    int as_ids = 0, quiet = 0, threads = n_cpus();
    SampleOpts o = {.temperature = 1.0, .top_k = 0, .top_p = 1.0, .grammar = 1, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        static const char *const with_value[] = {"-m", "--model", "--prompt", "--prompt-tokens", "-n", "--temperature",
                                                 "--top-k", "--top-p", "--seed", "--num-samples", "-b", "--batch",
                                                 "--name", "-o", "--out", "--registry", "-j", "--threads", "--device"};
        int takes = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) takes |= strcmp(a, with_value[k]) == 0;
        if (takes && !v) die_usage("option %s needs a value", a);
        if (takes) i++;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--prompt") == 0) {
            xgrow((void **)&prompt_args, &cap_prompt_args, n_prompt_args + 1, sizeof *prompt_args);
            prompt_args[n_prompt_args++] = v;
        }
        else if (strcmp(a, "--prompt-tokens") == 0) prompt_tokens = parse_long(a, v, 0, 1L << 30);
        else if (strcmp(a, "-n") == 0) n_new = parse_long(a, v, 1, 1L << 24);
        else if (strcmp(a, "--temperature") == 0) o.temperature = parse_double(a, v, 0, 100);
        else if (strcmp(a, "--top-k") == 0) o.top_k = (int)parse_long(a, v, 0, REMI_VOCAB_SIZE);
        else if (strcmp(a, "--top-p") == 0) o.top_p = parse_double(a, v, 1e-9, 1);
        else if (strcmp(a, "--seed") == 0) o.seed = (uint64_t)parse_long(a, v, 0, 1L << 62);
        else if (strcmp(a, "--num-samples") == 0) n_samples = parse_long(a, v, 1, 4096);
        else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) batch = parse_long(a, v, 1, 4096);
        else if (strcmp(a, "--name") == 0) name = v;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) out_path = v;
        else if (strcmp(a, "--registry") == 0) reg_path = v;
        else if (strcmp(a, "-j") == 0 || strcmp(a, "--threads") == 0) threads = (int)parse_long(a, v, 1, 1024);
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--no-grammar") == 0) o.grammar = 0;
        else if (strcmp(a, "--ids") == 0) as_ids = 1;
        else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) quiet = 1;
        else die_usage("unknown option: '%s'", a);
    }
    if (!model) die_usage("a model is required (-m RUN_DIR or -m model.safetensors)");
    if (reg_path && !out_path) die_usage("--registry records sample files: it needs -o FILE");
    if (prompt_tokens >= 0 && !n_prompt_args) die_usage("--prompt-tokens cuts prompts: it needs --prompt");
    if (name && n_prompt_args)
        die_usage("--name names unprompted samples: prompted documents are named after their prompts");
    char err[ERR_MAX];
    if (!name) name = "sample";
    if (doc_check_name(name, err) < 0) die_usage("bad --name: %s", err);
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) die_usage("--device '%s': expected cpu or cuda", device);
    ops_set_threads(threads); // the pool's threads; OpenBLAS itself runs single-threaded inside them
    RunConfig rc;
    HgModel m;
    if (ckpt_open_model(model, &rc, &m, err) < 0) die("cannot load model: %s", err);
    const Backend *be = backend_get(device, err); // cuda: the weights, caches and activations go to the GPU
    if (!be) die("cannot use device '%s': %s", device, err);
    if (hg_set_backend(&m, be, err) < 0) die("cannot use device '%s': %s", device, err);
    // the registry and the model's run in it, before the work: one that cannot be used fails now, not after it
    Registry *reg = NULL;
    int64_t reg_run = 0; // (none: the sample is recorded without a run, as before)
    if (reg_path && !(reg = reg_open_model_run(reg_path, model, 0, &reg_run, err))) die("%s", err);

    Prompts ps = {0};
    for (size_t i = 0; i < n_prompt_args; i++) add_prompts(prompt_args[i], &ps);
    if (!n_prompt_args) { // unprompted: one empty prompt, documents NAME_1, NAME_2, ...
        ps.v = xcalloc(1, sizeof *ps.v), ps.n = ps.cap = 1;
        ps.v[0].name = xstrdup(name);
    }
    unique_names(&ps);
    size_t max_prompt = 0;
    for (size_t i = 0; i < ps.n; i++) {
        IdBuf *pr = &ps.v[i].ids;
        if (prompt_tokens >= 0 && (size_t)prompt_tokens < pr->n) pr->n = (size_t)prompt_tokens;
        if (pr->n > max_prompt) max_prompt = pr->n;
    }

    // The documents to generate, grouped by window length (a decoder batch shares it), in batches of at most
    // `batch`. The window holds input_length tokens: a longer prompt keeps its last ones (BOS then falls out, as in
    // a slide). Item (i, k) draws from stream k, so its document depends on neither the batch nor the other prompts.
    int L = rc.input_length;
    size_t n_items = ps.n * (size_t)n_samples;
    Item *items = xmalloc(n_items * sizeof *items);
    for (size_t i = 0; i < ps.n; i++)
        for (long k = 0; k < n_samples; k++) {
            size_t P = ps.v[i].ids.n + 1;
            items[i * (size_t)n_samples + (size_t)k] = (Item){(int)i, (int)k, P > (size_t)L ? L : (int)P};
        }
    qsort(items, n_items, sizeof *items, cmp_item);
    if ((size_t)batch > n_items) batch = (long)n_items;
    if (dec_check_memory(&m, (int)batch, 0, 0, err) < 0) die("%s", err);
    int32_t *gen_all = xmalloc(n_items * (size_t)n_new * sizeof *gen_all);
    int *n_out_all = xmalloc(n_items * sizeof *n_out_all);
    int32_t *prompt = xmalloc((size_t)batch * L * sizeof *prompt), *gen = xmalloc((size_t)batch * n_new * sizeof *gen);
    int *n_out = xmalloc((size_t)batch * sizeof *n_out);
    uint64_t *streams = xmalloc((size_t)batch * sizeof *streams);
    o.streams = streams;
    Decoder *d = NULL;
    int dB = 0;
    double t0 = now_s();
    for (size_t first = 0; first < n_items;) {
        int Pw = items[first].w, B = 0;
        while (first + (size_t)B < n_items && B < batch && items[first + (size_t)B].w == Pw) B++;
        if (B != dB) { // a decoder per batch size: the last batch of a group may be smaller
            dec_free(d);
            if (!(d = dec_new(&m, B, NULL, err))) die("cannot start the decoder: %s", err);
            dB = B;
        }
        for (int b = 0; b < B; b++) {
            const Item *it = &items[first + (size_t)b];
            const IdBuf *pr = &ps.v[it->prompt].ids;
            size_t skip = pr->n + 1 - (size_t)Pw;
            for (int t = 0; t < Pw; t++) {
                size_t p = skip + (size_t)t; // position in BOS + prompt
                prompt[(size_t)b * Pw + t] = p == 0 ? REMI_BOS : pr->ids[p - 1];
            }
            streams[b] = (uint64_t)it->k;
        }
        if (sample_generate(d, B, prompt, Pw, (int)n_new, &o, gen, n_out, err) < 0) die("generation failed: %s", err);
        for (int b = 0; b < B; b++) {
            const Item *it = &items[first + (size_t)b];
            size_t slot = (size_t)it->prompt * (size_t)n_samples + (size_t)it->k;
            memcpy(gen_all + slot * (size_t)n_new, gen + (size_t)b * n_new, (size_t)n_new * sizeof *gen);
            n_out_all[slot] = n_out[b];
        }
        first += (size_t)B;
    }
    double secs = now_s() - t0;

    OutFile *of = out_path ? out_open(out_path) : NULL;
    FILE *fp = of ? of->fp : stdout;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int32_t *doc = xmalloc((max_prompt + (size_t)n_new) * sizeof *doc);
    long total = 0;
    for (size_t i = 0; i < ps.n; i++) {
        const Prompt *pr = &ps.v[i];
        size_t dlen = strlen(pr->name) + 24;
        char *dname = xmalloc(dlen);
        for (long k = 0; k < n_samples; k++) {
            size_t slot = i * (size_t)n_samples + (size_t)k;
            if (pr->ids.n) memcpy(doc, pr->ids.ids, pr->ids.n * sizeof *doc);
            if (n_out_all[slot])
                memcpy(doc + pr->ids.n, gen_all + slot * (size_t)n_new, (size_t)n_out_all[slot] * sizeof *doc);
            if (!n_prompt_args || n_samples > 1) snprintf(dname, dlen, "%s_%ld", pr->name, k + 1);
            else snprintf(dname, dlen, "%s", pr->name);
            len = 0;
            doc_format(&buf, &len, &cap, dname, doc, pr->ids.n + (size_t)n_out_all[slot], as_ids);
            xfwrite(buf, 1, len, fp, out_path ? out_path : "stdout");
            total += n_out_all[slot];
        }
        free(dname);
    }
    if (of) out_commit(of);
    else stdout_close();
    if (!quiet) {
        fprintf(stderr, "sample: %zu document%s, %ld new tokens in %.2f s (%.0f tokens/s)", n_items,
                n_items == 1 ? "" : "s", total, secs, (double)total / secs);
        if (n_prompt_args)
            fprintf(stderr, ", %zu prompt%s of up to %zu tokens\n", ps.n, ps.n == 1 ? "" : "s", max_prompt);
        else fprintf(stderr, ", no prompt\n");
    }
    if (reg) {
        if (reg_sample(reg, reg_run, out_path, total, (long)o.seed, err) < 0) die("%s", err);
        reg_close(reg);
    }
    for (size_t i = 0; i < ps.n; i++) free(ps.v[i].name), free(ps.v[i].ids.ids);
    free(ps.v), free(prompt_args), free(items), free(gen_all), free(n_out_all), free(streams);
    free(buf), free(doc), free(prompt), free(gen), free(n_out);
    dec_free(d);
    hg_free(&m);
    config_free(&rc);
    return 0;
}
