// docpage: the report's documents (see docpage.h): piano rolls of token documents with their audio players, and
// the eval study's pairs side by side. Moved out of tools/report.c, which keeps the queries and sections.
#include "docpage.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doc.h"
#include "plot.h"
#include "remi.h"
#include "stats.h"
#include "util.h"

void docpage_note(const DocPage *p, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(p->out, "<p class=\"note\">");
    plot_esc(p->out, buf);
    fprintf(p->out, "</p>\n");
}

// An <audio> player of the Ogg file src when it exists (nothing otherwise). With -o, src is copied to
// page_dir/rel (atomically) and the page refers to rel; on stdout it refers to src itself. A failed copy is a
// note on the page and on stderr.
static void audio(const DocPage *p, const char *src, const char *rel)
{
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) return;
    const char *href = src;
    char dst[4096], err[ERR_MAX];
    if (p->dir) {
        if (snprintf(dst, sizeof dst, "%s/%s", p->dir, rel) >= (int)sizeof dst) {
            docpage_note(p, "Audio '%s': path too long.", src);
            return;
        }
        if (file_copy(src, dst, err) < 0) {
            warn("audio: '%s': %s", src, err);
            docpage_note(p, "Audio '%s': cannot read: %s.", src, err);
            return;
        }
        href = rel;
    }
    fprintf(p->out, "<audio controls preload=\"metadata\" src=\"");
    plot_esc(p->out, href);
    fprintf(p->out, "\"></audio>\n");
}

// A piano roll of the notes s of document name (n_tokens tokens) of the token-document file path
// (plot_piano_roll with span and mark), then its audio: the file audio_dir/STEM.ogg (copied to
// audio/run-RUN/SUB/STEM.ogg beside the page). A document without notes is a note on the page, without audio.
static void draw_notes(const DocPage *p, const char *name, size_t n_tokens, const StatsSeq *s, const char *path,
                       const char *audio_dir, long long run, const char *sub, int64_t span, int64_t mark)
{
    if (s->n_notes == 0) {
        docpage_note(p, "Sample '%s' (%s): no notes in %zu tokens.", path, name, n_tokens);
        return; // its audio would be silence
    }
    plot_piano_roll(p->out, name, path, s->notes, s->n_notes, span, mark);
    char stem[DOC_STEM_MAX], src[4096], rel[4096];
    doc_file_stem(name, stem);
    snprintf(src, sizeof src, "%s/%s.ogg", audio_dir, stem);
    snprintf(rel, sizeof rel, "audio/run-%lld/%s%s.ogg", run, sub, stem);
    audio(p, src, rel);
}

static void draw_doc(const DocPage *p, const Doc *d, const char *path, const char *audio_dir, long long run)
{
    StatsSeq s = {0};
    stats_extract(d->ids.ids, d->ids.n, &s);
    draw_notes(p, d->name, d->ids.n, &s, path, audio_dir, run, "", 0, -1);
    stats_seq_free(&s);
}

// Up to *left documents of the sample file path, each a piano roll with its audio (DIR/midi/STEM.ogg) in a
// block of its own; *left is decreased by the documents drawn. Problems with the file become a note on the page
// and on stderr.
void docpage_samples(const DocPage *p, const char *path, long long run, long *left)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        warn("sample: '%s': %s", path, strerror(errno));
        docpage_note(p, "Sample '%s': cannot open: %s.", path, strerror(errno));
        --*left;
        return;
    }
    char err[ERR_MAX], *dir = path_dir(path), audio_dir[4096];
    snprintf(audio_dir, sizeof audio_dir, "%s/midi", dir);
    DocReader rd;
    doc_reader_init(&rd, fp, path);
    Doc d = {0};
    int rc, n = 0;
    while (*left > 0 && (rc = doc_read(&rd, &d, err)) > 0) {
        fprintf(p->out, "<div class=\"sample\">\n");
        draw_doc(p, &d, path, audio_dir, run);
        fprintf(p->out, "</div>\n");
        --*left, n++;
    }
    if (*left > 0 && (rc < 0 || n == 0)) {
        if (rc == 0) snprintf(err, sizeof err, "no document");
        warn("sample: '%s': %s", path, err);
        docpage_note(p, "Sample '%s': cannot read: %s.", path, err);
        if (n == 0) --*left;
    }
    free(d.ids.ids);
    doc_reader_free(&rd);
    fclose(fp);
    free(dir);
}

// One study pair, side by side: a (prompt + original) and b (prompt + generated) on one time axis, the prompt's
// end (where their tokens first differ) marked on both.
static void draw_pair(const DocPage *p, const char *a_name, const IdBuf *a, const Doc *b, const char *path,
                      const char *audio_dir, long long run)
{
    size_t k = 0;
    while (k < a->n && k < b->ids.n && a->ids[k] == b->ids.ids[k]) k++;
    int64_t mark = remi_time_at(a->ids, k), span = 0;
    StatsSeq sa = {0}, sb = {0};
    stats_extract(a->ids, a->n, &sa), stats_extract(b->ids.ids, b->ids.n, &sb);
    for (int j = 0; j < 2; j++) {
        const StatsSeq *x = j ? &sb : &sa;
        for (size_t i = 0; i < x->n_notes; i++)
            if (x->notes[i].onset + x->notes[i].dur > span) span = x->notes[i].onset + x->notes[i].dur;
    }
    double s = (double)mark / (2 * REMI_TPQ); // 120 qpm: 16 ticks a second
    size_t len = strlen(a_name), cut = len > 9 && strcmp(a_name + len - 9, "-original") == 0 ? len - 9 : len;
    char *title = xstrdup(a_name);
    title[cut] = '\0';
    fprintf(p->out, "<p>");
    plot_esc(p->out, title);
    free(title);
    fprintf(p->out, ": the same prompt (the first %zu tokens, to bar %.2f, %d:%04.1f at 120 qpm), then the original continuation"
        " (left) and the model's (right).</p>\n<div class=\"pair\">\n<div>\n", k, 1.0 + (double)mark / REMI_TICKS_PER_BAR,
        (int)(s / 60), fmod(s, 60));
    draw_notes(p, a_name, a->n, &sa, path, audio_dir, run, "study/", span, mark);
    fprintf(p->out, "</div>\n<div>\n");
    draw_notes(p, b->name, b->ids.n, &sb, path, audio_dir, run, "study/", span, mark);
    fprintf(p->out, "</div>\n</div>\n");
    stats_seq_free(&sa), stats_seq_free(&sb);
}

// The eval study's documents of a run (RUN_DIR/study.txt, pairs NAME-original, NAME-generated as eval
// --study-out writes them), each pair side by side with its audio (RUN_DIR/study/STEM.ogg). Nothing when the
// run has no study file; a bad one, or an odd document out, is a note.
void docpage_study(const DocPage *p, const char *run_dir, long long run)
{
    char path[4096], audio_dir[4096], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/study.txt", run_dir);
    snprintf(audio_dir, sizeof audio_dir, "%s/study", run_dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) return;
    fprintf(p->out, "<h4>Eval study: prompt + original continuation | prompt + generated continuation</h4>\n");
    DocReader rd;
    doc_reader_init(&rd, fp, path);
    Doc d = {0};
    IdBuf first = {0};
    char *first_name = NULL;
    int rc;
    while ((rc = doc_read(&rd, &d, err)) > 0) {
        if (!first_name) { // the pair's first document: kept until its second arrives
            first_name = xstrdup(d.name);
            free(first.ids);
            first = d.ids, d.ids = (IdBuf){0}; // its tokens are taken over; the next read starts a fresh buffer
            continue;
        }
        draw_pair(p, first_name, &first, &d, path, audio_dir, run);
        free(first_name), first_name = NULL;
    }
    if (rc < 0) {
        warn("study: '%s': %s", path, err);
        docpage_note(p, "Study documents '%s': cannot read: %s.", path, err);
    } else if (first_name) {
        docpage_note(p, "Study documents '%s': '%s' has no second document to pair with.", path, first_name);
    }
    free(first_name), free(first.ids), free(d.ids.ids);
    doc_reader_free(&rd);
    fclose(fp);
}

