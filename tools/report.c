// report: the experiment registry (spec/formats.md §5) -> one self-contained HTML page (no script, no external
// file): the results and ablation views as tables, every run's best val loss per experiment (dots on a fitted
// axis), bars of the ablation means with ±sd error bars, per experiment the val-loss curves of its seeds (mean
// line, min-max band), per run its train/val loss curves and piano rolls of a few samples. The plots are inline SVG drawn by plot.h; this file holds the queries, the HTML around them
// and the page's CSS. The registry is read only through registry.h's read-only queries; samples are token
// documents (formats.md §2) drawn from stats_extract's notes. A missing or bad sample file is a note in the page,
// not a failure. The page holds no timestamp: the same registry gives the same bytes. Audio (issue 16): a sample
// document whose Ogg Vorbis file `make audio` rendered (SAMPLES_DIR/midi/STEM.ogg) gets an <audio> player beside
// its piano roll, and a run folder holding eval's study.txt (eval --study-out) gets its pairs, prompt + original
// and prompt + generated, side by side (audio in RUN_DIR/study/). With -o the audio files are copied beside the
// page (audio/run-ID/...) and referenced by relative path, so the page's folder can be moved as a whole.
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docpage.h"
#include "plot.h"
#include "registry.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: report [options]\n"
           "Write an HTML report of the experiment registry: the results and ablation views as tables,\n"
           "each run's best val loss per experiment, ablation bars with error bars, loss curves per run and\n"
           "per experiment, piano rolls of samples with their audio, and the eval study's documents.\n"
           "\n"
           "  --registry FILE   experiment registry (default %s); it must exist\n"
           "  -o FILE           write the page to FILE, atomically (default, or -: stdout)\n"
           "  --samples N       sample documents per run (piano roll and audio), 0..100 (default 3)\n"
           "  -h, --help        show this help\n"
           "\n"
           "Relative sample paths in the registry are read from the current folder. A missing or bad\n"
           "sample file is noted in the page and on stderr; it is not an error.\n"
           "Audio: the document NAME of a sample file DIR/FILE plays DIR/midi/STEM.ogg and the study\n"
           "documents of RUN_DIR/study.txt (eval --study-out) play RUN_DIR/study/STEM.ogg, where they exist\n"
           "(make audio renders them; STEM as remi2midi -O names files). With -o they are copied to\n"
           "audio/run-ID/ beside the page, which refers to them by relative path.\n"
           "Exit status: 0 success, 1 registry or I/O error, 2 usage error.\n",
           REG_DEFAULT_PATH);
}

static FILE *out;
static Registry *reg;

#define MAX_POINTS 1500 // points per curve; longer curves are thinned (every k-th point, and the last)

// ---- output helpers ---------------------------------------------------------------------------

static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
}

static const char *fmt_value(const RegValue *v, char buf[48])
{
    switch (v->type) {
    case REG_INT: snprintf(buf, 48, "%lld", (long long)v->i); return buf;
    case REG_REAL: return plot_fmt_num(v->d, buf);
    case REG_TEXT: return v->s;
    default: return "";
    }
}

static RegTable *sel(const char *sql, int n_binds, const RegValue binds[])
{
    char err[ERR_MAX];
    RegTable *t = reg_select(reg, sql, n_binds, binds, err);
    if (!t) die("%s", err);
    return t;
}

static DocPage page; // the page and its folder, for the documents' piano rolls and audio (docpage.h)
#define note(...) docpage_note(&page, __VA_ARGS__)

// ---- sections ---------------------------------------------------------------------------------

// Fills a series from the (x, y) columns of t (rows with a non-finite value skipped; thinned to MAX_POINTS).
static void series_from(PlotSeries *s, const char *name, const char *color, double width, const RegTable *t, int cx,
                        int cy, int clo, int chi)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->color = color, s->width = width;
    size_t k = t->n_rows > MAX_POINTS ? (t->n_rows + MAX_POINTS - 1) / MAX_POINTS : 1, m = t->n_rows + 1;
    s->x = xmalloc(m * sizeof(double)), s->y = xmalloc(m * sizeof(double));
    if (clo >= 0) s->lo = xmalloc(m * sizeof(double)), s->hi = xmalloc(m * sizeof(double));
    for (size_t i = 0; i < t->n_rows; i++) {
        if (i % k && i + 1 != t->n_rows) continue;
        double x = reg_cell(t, i, cx)->d, y = reg_cell(t, i, cy)->d;
        if (reg_cell(t, i, cx)->type == REG_NULL || reg_cell(t, i, cy)->type == REG_NULL || !isfinite(x) || !isfinite(y))
            continue;
        if (clo >= 0) {
            s->lo[s->n] = reg_cell(t, i, clo)->d, s->hi[s->n] = reg_cell(t, i, chi)->d;
            if (!isfinite(s->lo[s->n]) || !isfinite(s->hi[s->n])) continue;
        }
        s->x[s->n] = x, s->y[s->n++] = y;
    }
}

static void series_free(PlotSeries *s, int n)
{
    for (int i = 0; i < n; i++) free(s[i].x), free(s[i].y), free(s[i].lo), free(s[i].hi);
}

// Whether column c of t is X_sd with an X_mean beside it (shown in X_mean's cell).
static bool is_paired_sd(const RegTable *t, int c)
{
    const char *nm = t->names[c];
    size_t len = strlen(nm);
    char mean_name[128];
    if (len < 4 || strcmp(nm + len - 3, "_sd") != 0) return false;
    snprintf(mean_name, sizeof mean_name, "%.*s_mean", (int)(len - 3), nm);
    return reg_table_col(t, mean_name) >= 0;
}

// A table of every column of t; with pair_sd, X_mean and X_sd columns become one "mean ± sd" column X.
static void html_table(const char *id, const RegTable *t, bool pair_sd)
{
    put("<div class=\"scroll\"><table id=\"%s\">\n<tr>", id);
    for (int c = 0; c < t->n_cols; c++) {
        const char *nm = t->names[c];
        size_t len = strlen(nm);
        if (pair_sd && is_paired_sd(t, c)) continue;
        put("<th>");
        if (pair_sd && len > 5 && strcmp(nm + len - 5, "_mean") == 0) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(len - 5), nm);
            plot_esc(out, base);
            put("<br><small>mean ± sd</small>");
        } else {
            plot_esc(out, nm);
        }
        put("</th>");
    }
    put("</tr>\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        put("<tr>");
        for (int c = 0; c < t->n_cols; c++) {
            const char *nm = t->names[c];
            size_t len = strlen(nm);
            char buf[48], sd_name[128];
            if (pair_sd && is_paired_sd(t, c)) continue;
            const RegValue *v = reg_cell(t, i, c);
            put("<td%s>", v->type == REG_INT || v->type == REG_REAL ? " class=\"num\"" : "");
            plot_esc(out, fmt_value(v, buf));
            snprintf(sd_name, sizeof sd_name, "%.*s_sd", (int)(len > 5 ? len - 5 : 0), nm);
            if (pair_sd && len > 5 && strcmp(nm + len - 5, "_mean") == 0 && v->type != REG_NULL) {
                const RegValue *sd = reg_cell(t, i, reg_table_col(t, sd_name));
                // equal values give an sd of rounding noise (avg() is not exact): shown as 0
                if (sd->type != REG_NULL) put(" ± %s", fabs(sd->d) <= 1e-9 * fabs(v->d) ? "0" : fmt_value(sd, buf));
            }
            put("</td>");
        }
        put("</tr>\n");
    }
    put("</table></div>\n");
}

static const char *const bar_metrics[][2] = {
    {"val_loss", "best val loss"},    {"test_perplexity", "test perplexity"}, {"test_accuracy", "test accuracy"},
    {"pitch_class_kl", "pitch-class KL"}, {"duration_kl", "duration KL"},     {"velocity_kl", "velocity KL"},
    {"validity", "validity"},         {"train_tokens_per_s", "train tokens/s"}, {"wall_s", "wall time (s)"},
};

// Every finished run's best val loss, grouped per ablation row, on an axis fitted to the data: whether the seeds
// of two configs overlap, which bars from 0 hide. labels, mean, sd: scratch of t->n_rows entries.
static void section_seeds(const RegTable *t, const char **labels, double *mean, double *sd)
{
    RegTable **r = xcalloc(t->n_rows, sizeof *r);
    const double **v = xcalloc(t->n_rows, sizeof *v);
    int *n_v = xcalloc(t->n_rows, sizeof *n_v), n = 0, cm = reg_table_col(t, "val_loss_mean");
    int cs = reg_table_col(t, "val_loss_sd");
    for (size_t i = 0; i < t->n_rows; i++) {
        const RegValue *x = reg_cell(t, i, 0), *m = reg_cell(t, i, cm), *e = reg_cell(t, i, cs);
        if (x->type != REG_TEXT || m->type == REG_NULL || !isfinite(m->d)) continue;
        r[n] = sel("SELECT best_val_loss FROM results WHERE status = 'done' AND experiment = ? AND best_val_loss"
                   " BETWEEN -1e300 AND 1e300 ORDER BY run_id", 1, x);
        double *vals = xcalloc(r[n]->n_rows + 1, sizeof *vals);
        for (size_t k = 0; k < r[n]->n_rows; k++) vals[n_v[n]++] = reg_cell(r[n], k, 0)->d; // finite REALs (metrics.value)
        v[n] = vals, labels[n] = x->s, mean[n] = m->d, sd[n++] = e->type == REG_NULL || !isfinite(e->d) ? NAN : e->d;
    }
    if (n) plot_dots(out, "best val loss per seed", "best val loss", n, labels, v, n_v, mean, sd);
    for (int i = 0; i < n; i++) free((void *)v[i]), reg_table_free(r[i]);
    free(r), free(v), free(n_v);
}

static void section_ablation(const RegTable *t)
{
    put("<h2 id=\"ablation\">Ablation: mean ± sd over seeds</h2>\n<p>One row per experiment over its runs with status"
        " <code>done</code> (view <code>ablation</code>); sd is the sample standard deviation, empty for a single"
        " value.</p>\n");
    if (t->n_rows == 0) {
        note("No finished runs.");
        return;
    }
    html_table("ablation-table", t, true);
    const char **labels = xcalloc(t->n_rows, sizeof *labels);
    double *mean = xcalloc(t->n_rows, sizeof *mean), *sd = xcalloc(t->n_rows, sizeof *sd);
    put("<div class=\"row\">\n");
    section_seeds(t, labels, mean, sd);
    for (size_t m = 0; m < sizeof bar_metrics / sizeof *bar_metrics; m++) {
        char c_mean[64], c_sd[64];
        snprintf(c_mean, sizeof c_mean, "%s_mean", bar_metrics[m][0]);
        snprintf(c_sd, sizeof c_sd, "%s_sd", bar_metrics[m][0]);
        int cm = reg_table_col(t, c_mean), cs = reg_table_col(t, c_sd), n = 0;
        for (size_t i = 0; i < t->n_rows; i++) {
            const RegValue *v = reg_cell(t, i, cm), *e = reg_cell(t, i, cs), *x = reg_cell(t, i, 0);
            if (v->type == REG_NULL || !isfinite(v->d)) continue;
            labels[n] = x->type == REG_TEXT ? x->s : "(none)";
            mean[n] = v->d, sd[n++] = e->type == REG_NULL || !isfinite(e->d) ? NAN : e->d;
        }
        if (n) plot_bars(out, bar_metrics[m][1], bar_metrics[m][1], n, labels, mean, sd);
    }
    put("</div>\n");
    free(labels), free(mean), free(sd);
}

// Per experiment: the val-loss curves of its finished runs, their mean and min-max band.
static void section_configs(const RegTable *abl)
{
    put("<h2 id=\"configs\">Val loss over seeds</h2>\n<p>Per experiment, the val loss of each finished run, the mean"
        " over the runs that logged each step and the min-max band.</p>\n<div class=\"row\">\n");
    if (abl->n_rows == 0) note("No finished runs.");
    for (size_t e = 0; e < abl->n_rows; e++) {
        RegValue exp = *reg_cell(abl, e, 0);
        RegTable *agg = sel("SELECT m.step, avg(m.value), min(m.value), max(m.value) FROM runs r JOIN metrics m"
                            " ON m.run_id = r.run_id WHERE r.status = 'done' AND r.experiment IS ? AND m.split = 'val'"
                            " AND m.name = 'loss' GROUP BY m.step ORDER BY m.step", 1, &exp);
        RegTable *runs = sel("SELECT DISTINCT r.run_id, r.seed FROM runs r JOIN metrics m ON m.run_id = r.run_id"
                             " WHERE r.status = 'done' AND r.experiment IS ? AND m.split = 'val' AND m.name = 'loss'"
                             " ORDER BY r.run_id", 1, &exp);
        int n = 0, cap = 2 + (int)runs->n_rows;
        PlotSeries *s = xcalloc((size_t)cap, sizeof *s);
        char name[96], title[160], buf[48];
        snprintf(name, sizeof name, "min-max of %zu runs", runs->n_rows);
        series_from(&s[n++], name, "#555", 1, agg, 0, 1, 2, 3);
        for (size_t i = 0; i < runs->n_rows; i++) {
            RegTable *c = sel("SELECT step, value FROM metrics WHERE run_id = ? AND split = 'val' AND name = 'loss'"
                              " ORDER BY step", 1, reg_cell(runs, i, 0));
            snprintf(name, sizeof name, "run %lld, seed %s", (long long)reg_cell(runs, i, 0)->i,
                     fmt_value(reg_cell(runs, i, 1), buf));
            series_from(&s[n++], name, plot_color((int)i), 1, c, 0, 1, -1, -1);
            reg_table_free(c);
        }
        series_from(&s[n++], "mean", "#000", 2.5, agg, 0, 1, -1, -1); // last: drawn over the seeds
        snprintf(title, sizeof title, "%s: val loss", exp.type == REG_TEXT ? exp.s : "(none)");
        if (!plot_line(out, title, "step", "val loss", s, n)) note("%s: no points.", title);
        series_free(s, n);
        free(s);
        reg_table_free(agg), reg_table_free(runs);
    }
    put("</div>\n");
}

// Per run: its train and val loss curves, piano rolls and audio of up to n_samples sample documents, and the
// eval study's documents when its folder has them.
static void section_runs(long n_samples)
{
    put("<h2 id=\"runs\">Runs</h2>\n");
    RegTable *t = sel("SELECT r.run_id, r.experiment, r.status, r.seed, r.out_dir, s.steps, s.best_val_loss"
                      " FROM runs r JOIN results s ON s.run_id = r.run_id ORDER BY r.run_id", 0, NULL);
    if (t->n_rows == 0) note("No runs in the registry.");
    for (size_t i = 0; i < t->n_rows; i++) {
        const RegValue *id = reg_cell(t, i, 0);
        char buf[48];
        put("<h3 id=\"run-%lld\">Run %lld: ", (long long)id->i, (long long)id->i);
        plot_esc(out, fmt_value(reg_cell(t, i, 1), buf));
        put("</h3>\n<p>");
        for (int c = 2; c < t->n_cols; c++) {
            put("%s", c > 2 ? ", " : "");
            plot_esc(out, t->names[c]);
            put(" <b>");
            plot_esc(out, reg_cell(t, i, c)->type == REG_NULL ? "-" : fmt_value(reg_cell(t, i, c), buf));
            put("</b>");
        }
        put("</p>\n<div class=\"row\">\n");
        RegTable *tr = sel("SELECT step, value FROM metrics WHERE run_id = ? AND split = 'train' AND name = 'loss'"
                           " ORDER BY step", 1, id);
        RegTable *va = sel("SELECT step, value FROM metrics WHERE run_id = ? AND split = 'val' AND name = 'loss'"
                           " ORDER BY step", 1, id);
        if (tr->n_rows + va->n_rows == 0) {
            note("No loss metrics logged.");
        } else {
            PlotSeries s[2];
            series_from(&s[0], "train loss", plot_color(0), 1.5, tr, 0, 1, -1, -1);
            series_from(&s[1], "val loss", plot_color(1), 2, va, 0, 1, -1, -1);
            char title[64];
            snprintf(title, sizeof title, "run %lld: loss", (long long)id->i);
            if (!plot_line(out, title, "step", "loss", s, 2)) note("%s: no points.", title);
            series_free(s, 2);
        }
        put("</div>\n");
        reg_table_free(tr), reg_table_free(va);
        RegTable *sm = sel("SELECT path FROM samples WHERE run_id = ? ORDER BY rowid", 1, id);
        if (sm->n_rows == 0) note("No samples.");
        else if (n_samples > 0) put("<div class=\"row\">\n");
        long left = n_samples;
        for (size_t k = 0; k < sm->n_rows && left > 0; k++) {
            const RegValue *p = reg_cell(sm, k, 0);
            if (p->type == REG_TEXT) docpage_samples(&page, p->s, (long long)id->i, &left);
            else note("A sample without a path."), left--;
        }
        if (sm->n_rows && n_samples > 0) put("</div>\n");
        if (n_samples > 0 && reg_cell(t, i, 4)->type == REG_TEXT) docpage_study(&page, reg_cell(t, i, 4)->s, (long long)id->i);
        reg_table_free(sm);
    }
    reg_table_free(t);
}

static const char *const css =
    "body{font:14px/1.4 sans-serif;margin:20px;color:#222}h2{margin-top:32px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}.scroll{overflow-x:auto}"
    ".note{color:#a40;font-style:italic}.row{display:flex;flex-wrap:wrap;gap:12px}svg{display:block;margin:6px 0}"
    "svg text{font:11px sans-serif;fill:#222}svg .title{font-weight:bold;font-size:12px}svg .label{font-size:12px}"
    ".grid{stroke:#eee}.axis{stroke:#444}.err{stroke:#000;stroke-width:1.5;fill:none}"
    "audio{display:block;width:100%;max-width:1100px;margin:2px 0 10px}"
    ".pair{display:grid;grid-template-columns:1fr 1fr;gap:12px;max-width:2224px}.pair svg{width:100%;height:auto}"
    ".mark{stroke:#c00;stroke-width:1.5;stroke-dasharray:5 4}";

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *reg_path = REG_DEFAULT_PATH, *out_path = NULL;
    long n_samples = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(a, "--registry") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "--samples") == 0) {
            if (i + 1 >= argc) die_usage("option %s needs a value", a);
            const char *v = argv[++i];
            if (a[1] == 'o') out_path = v;
            else if (a[2] == 'r') reg_path = v;
            else n_samples = parse_long(a, v, 0, 100);
        } else if (a[0] == '-') {
            die_usage("unknown option: '%s'", a);
        } else {
            die_usage("unexpected argument: '%s'", a);
        }
    }
    if (out_path && !*out_path) die_usage("option -o needs a file name");
    char err[ERR_MAX];
    if (!(reg = reg_open_existing(reg_path, err))) die("%s", err);
    OutFile *o = out_path && strcmp(out_path, "-") ? out_open(out_path) : NULL;
    out = o ? o->fp : stdout;
    page = (DocPage){.out = out, .dir = o ? path_dir(out_path) : NULL}; // audio/ goes beside the page

    RegTable *counts = sel("SELECT count(*), coalesce(sum(status = 'done'), 0), count(DISTINCT experiment) FROM runs", 0, NULL);
    RegTable *results = sel("SELECT * FROM results ORDER BY run_id", 0, NULL);
    RegTable *abl = sel("SELECT * FROM ablation ORDER BY experiment", 0, NULL);
    put("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Experiment report</title>\n"
        "<style>%s</style></head><body>\n<h1>Experiment report</h1>\n<p>Registry <code>", css);
    plot_esc(out, reg_path);
    put("</code>: %lld runs, %lld done, %lld experiments. <a href=\"#results\">results</a> · <a href=\"#ablation\">"
        "ablation</a> · <a href=\"#configs\">val loss over seeds</a> · <a href=\"#runs\">runs</a></p>\n",
        (long long)reg_cell(counts, 0, 0)->i, (long long)reg_cell(counts, 0, 1)->i, (long long)reg_cell(counts, 0, 2)->i);
    put("<h2 id=\"results\">Results</h2>\n<p>One row per run (view <code>results</code>).</p>\n");
    if (results->n_rows == 0) note("No runs in the registry.");
    else html_table("results-table", results, false);
    section_ablation(abl);
    section_configs(abl);
    section_runs(n_samples);
    put("</body></html>\n");
    reg_table_free(counts), reg_table_free(results), reg_table_free(abl);
    reg_close(reg);
    if (o) out_commit(o);
    else stdout_close();
    free((char *)page.dir);
    return 0;
}
