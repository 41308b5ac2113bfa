// plot: inline SVG line plots, bar charts and piano rolls (see plot.h). A chart is a frame (an <svg> of w x h px
// with margins around a plot area mapped to a data window) plus marks drawn through fx/fy. Coordinates are
// printed to 0.1 px (notes 0.01 px). Owns no format; writes only to the FILE * it is given and allocates nothing.
#include "plot.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "remi.h"

#define N_PALETTE 10
static const char *const palette[N_PALETTE] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

const char *plot_color(int i)
{
    assert(i >= 0);
    return palette[i % N_PALETTE];
}

void plot_esc(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*s, out);
        }
    }
}

const char *plot_fmt_num(double d, char buf[48])
{
    if (fabs(d) >= 1e4 && fabs(d) < 1e15) snprintf(buf, 48, "%.0f", d);
    else snprintf(buf, 48, "%.4g", d);
    return buf;
}

// ---- frames -----------------------------------------------------------------------------------

// The plot area inside an SVG of w x h px with margins l, r, t, b, showing [x0, x1] x [y0, y1].
typedef struct PlotFrame {
    double w, h, l, r, t, b, x0, x1, y0, y1;
} PlotFrame;

// Data coordinates -> SVG px (y grows downwards in SVG).
static double fx(const PlotFrame *f, double x) { return f->l + (x - f->x0) / (f->x1 - f->x0) * (f->w - f->l - f->r); }
static double fy(const PlotFrame *f, double y)
{
    return f->h - f->b - (y - f->y0) / (f->y1 - f->y0) * (f->h - f->t - f->b);
}

// 1, 2 or 5 times a power of ten, near span / n.
static double nice_step(double span, int n)
{
    double raw = span / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

// Widens [lo, hi] by pad of its span, or around the value when it is a single point.
static void widen(double *lo, double *hi, double pad)
{
    double d = *hi > *lo ? (*hi - *lo) * pad : fabs(*lo) > 1e-12 ? fabs(*lo) * 0.1 : 1;
    *lo -= d, *hi += d;
}

enum { TICKS_X = 1, TICKS_Y = 2 };

// Opens an <svg> with its title, grid, the ticks asked for, axis lines and axis labels.
static void frame_open(FILE *out, const PlotFrame *f, const char *cls, const char *title, const char *xlabel,
                       const char *ylabel, int ticks)
{
    fprintf(out, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\""
            " viewBox=\"0 0 %.0f %.0f\"><rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
            "<text x=\"%.1f\" y=\"16\" class=\"title\">",
            cls, f->w, f->h, f->w, f->h, f->l);
    plot_esc(out, title);
    fputs("</text>\n", out);
    for (int axis = 0; axis < 2; axis++) {
        if (!(ticks & (axis ? TICKS_Y : TICKS_X))) continue;
        double lo = axis ? f->y0 : f->x0, hi = axis ? f->y1 : f->x1, step = nice_step(hi - lo, axis ? 5 : 8);
        for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && k < ceil(lo / step) + 40; k++) {
            double v = fabs(k) < 0.5 ? 0 : k * step, p = axis ? fy(f, v) : fx(f, v); // never "-0"
            char buf[48];
            snprintf(buf, sizeof buf, "%.6g", v);
            if (axis)
                fprintf(out, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                        f->l, f->w - f->r, p, p, f->l - 4, p + 4, buf);
            else
                fprintf(out, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                        p, p, f->t, f->h - f->b, p, f->h - f->b + 14, buf);
        }
    }
    fprintf(out, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
            "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n",
            f->l, f->w - f->r, f->h - f->b, f->h - f->b, f->l, f->l, f->t, f->h - f->b);
    fprintf(out, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (f->l + f->w - f->r) / 2,
            f->h - 6);
    plot_esc(out, xlabel);
    fprintf(out, "</text><text class=\"label\" transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
            (f->t + f->h - f->b) / 2);
    plot_esc(out, ylabel);
    fputs("</text>\n", out);
}

// A legend entry i in the right margin: a swatch (a line, or a filled box for a band) and the name.
static void legend(FILE *out, const PlotFrame *f, int i, const char *name, const char *color, bool band)
{
    double x = f->w - f->r + 12, y = f->t + 6 + 18.0 * i;
    if (band)
        fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"10\" fill=\"%s\" fill-opacity=\"0.25\"/>", x,
                y - 5, color);
    else
        fprintf(out, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"/>", x,
                x + 18, y, y, color);
    fprintf(out, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", x + 24, y + 4);
    plot_esc(out, name);
    fputs("</text>\n", out);
}

// ---- charts -----------------------------------------------------------------------------------

bool plot_line(FILE *out, const char *title, const char *xlabel, const char *ylabel, const PlotSeries *s, int n)
{
    PlotFrame f = {600, 300, 64, 170, 28, 42, INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < s[i].n; k++) {
            f.x0 = fmin(f.x0, s[i].x[k]), f.x1 = fmax(f.x1, s[i].x[k]);
            f.y0 = fmin(f.y0, s[i].lo ? s[i].lo[k] : s[i].y[k]), f.y1 = fmax(f.y1, s[i].hi ? s[i].hi[k] : s[i].y[k]);
        }
    if (!(f.x1 >= f.x0)) return false;
    if (f.x1 == f.x0) widen(&f.x0, &f.x1, 0);
    widen(&f.y0, &f.y1, 0.05);
    frame_open(out, &f, "plot", title, xlabel, ylabel, TICKS_X | TICKS_Y);
    for (int pass = 0; pass < 2; pass++) // bands first, curves over them
        for (int i = 0; i < n; i++) {
            const PlotSeries *q = &s[i];
            if ((q->lo != NULL) != (pass == 0) || q->n == 0) continue;
            if (q->lo) {
                fprintf(out, "<polygon fill=\"%s\" fill-opacity=\"0.25\" stroke=\"none\" points=\"", q->color);
                for (size_t k = 0; k < q->n; k++) fprintf(out, "%.1f,%.1f ", fx(&f, q->x[k]), fy(&f, q->hi[k]));
                for (size_t k = q->n; k-- > 0;) fprintf(out, "%.1f,%.1f ", fx(&f, q->x[k]), fy(&f, q->lo[k]));
                fputs("\"/>\n", out);
                continue;
            }
            if (q->n > 1) {
                fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" points=\"", q->color,
                        q->width);
                for (size_t k = 0; k < q->n; k++) fprintf(out, "%.1f,%.1f ", fx(&f, q->x[k]), fy(&f, q->y[k]));
                fputs("\"/>\n", out);
            }
            if (q->n <= 40) // few points (val curves): mark each
                for (size_t k = 0; k < q->n; k++)
                    fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>", fx(&f, q->x[k]),
                            fy(&f, q->y[k]), 1 + q->width, q->color);
        }
    for (int i = 0; i < n && i < 12; i++) legend(out, &f, i, s[i].name, s[i].color, s[i].lo != NULL);
    fputs("</svg>\n", out);
    return true;
}

static void slot_label(FILE *out, const PlotFrame *f, double xc, const char *s);

void plot_bars(FILE *out, const char *title, const char *ylabel, int n, const char *const labels[],
               const double mean[], const double sd[])
{
    PlotFrame f = {fmin(1100, fmax(360, 90 + 70.0 * n)), 320, 64, 16, 28, 96, 0, n, 0, 0};
    for (int i = 0; i < n; i++) {
        double e = isnan(sd[i]) ? 0 : sd[i];
        f.y0 = fmin(f.y0, mean[i] - e), f.y1 = fmax(f.y1, mean[i] + e);
    }
    if (f.y1 == f.y0) f.y1 = 1;
    double pad = (f.y1 - f.y0) * 0.08;
    f.y1 += f.y1 > 0 ? pad : 0, f.y0 -= f.y0 < 0 ? pad : 0;
    frame_open(out, &f, "bars", title, "", ylabel, TICKS_Y);
    for (int i = 0; i < n; i++) {
        double xc = fx(&f, i + 0.5), bw = (fx(&f, 1) - fx(&f, 0)) * 0.6, top = fy(&f, fmax(mean[i], 0));
        double bottom = fy(&f, fmin(mean[i], 0)), hb = fmax(bottom - top, 0.5);
        fprintf(out, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>",
                xc - bw / 2, top, bw, hb, palette[i % N_PALETTE]);
        if (!isnan(sd[i])) {
            double y_lo = fy(&f, mean[i] - sd[i]), y_hi = fy(&f, mean[i] + sd[i]);
            fprintf(out, "<path class=\"err\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\"/>", xc, y_lo, y_hi,
                    xc - 6, y_lo, xc + 6, xc - 6, y_hi, xc + 6);
        }
        char buf[48];
        fprintf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", xc,
                fy(&f, mean[i] + (isnan(sd[i]) ? 0 : fmax(sd[i], 0) * (mean[i] >= 0 ? 1 : -1))) - 4,
                plot_fmt_num(mean[i], buf));
        slot_label(out, &f, xc, labels[i]);
    }
    fputs("</svg>\n", out);
}

// A group's label under slot x of f, rotated, cut to 26 bytes past 28 (never inside a UTF-8 sequence).
static void slot_label(FILE *out, const PlotFrame *f, double xc, const char *s)
{
    char label[40];
    size_t len = strlen(s);
    if (len > 28) {
        len = 26;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80) len--;
    }
    snprintf(label, sizeof label, "%.*s%s", (int)len, s, len < strlen(s) ? ".." : "");
    fprintf(out, "<text class=\"tick\" transform=\"translate(%.1f %.1f) rotate(-30)\" text-anchor=\"end\">", xc + 4,
            f->h - f->b + 14);
    plot_esc(out, label);
    fputs("</text>\n", out);
}

void plot_dots(FILE *out, const char *title, const char *ylabel, int n, const char *const labels[],
               const double *const v[], const int n_v[], const double mean[], const double sd[])
{
    PlotFrame f = {fmin(1100, fmax(360, 90 + 70.0 * n)), 320, 64, 16, 28, 96, 0, n, INFINITY, -INFINITY};
    for (int i = 0; i < n; i++) {
        double e = isnan(sd[i]) ? 0 : sd[i];
        f.y0 = fmin(f.y0, mean[i] - e), f.y1 = fmax(f.y1, mean[i] + e);
        for (int k = 0; k < n_v[i]; k++) f.y0 = fmin(f.y0, v[i][k]), f.y1 = fmax(f.y1, v[i][k]);
    }
    widen(&f.y0, &f.y1, 0.08);
    frame_open(out, &f, "dots", title, "", ylabel, TICKS_Y);
    for (int i = 0; i < n; i++) {
        double xc = fx(&f, i + 0.5), half = (fx(&f, 1) - fx(&f, 0)) * 0.3, ym = fy(&f, mean[i]);
        const char *color = palette[i % N_PALETTE];
        for (int k = 0; k < n_v[i]; k++) // spread evenly across the slot, in order
            fprintf(out, "<circle class=\"dot\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>",
                    n_v[i] > 1 ? xc - half * 0.6 + 1.2 * half * k / (n_v[i] - 1) : xc, fy(&f, v[i][k]), color);
        fprintf(out, "<path class=\"axis\" d=\"M%.1f %.1fH%.1f\"/>", xc - half, ym, xc + half);
        if (!isnan(sd[i])) {
            double y_lo = fy(&f, mean[i] - sd[i]), y_hi = fy(&f, mean[i] + sd[i]);
            fprintf(out, "<path class=\"err\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\"/>", xc + half,
                    y_lo, y_hi, xc + half - 5, y_lo, xc + half + 5, xc + half - 5, y_hi, xc + half + 5);
        }
        char buf[48];
        fprintf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", xc,
                fy(&f, f.y1) + 10, plot_fmt_num(mean[i], buf));
        slot_label(out, &f, xc, labels[i]);
    }
    fputs("</svg>\n", out);
}

// ---- piano rolls ------------------------------------------------------------------------------

void plot_piano_roll(FILE *out, const char *name, const char *source, const StatsNote *notes, size_t n_notes,
                     int64_t span, int64_t mark)
{
    assert(n_notes > 0);
    int64_t t_end = span > 1 ? span : 1;
    int p_lo = 127, p_hi = 0;
    bool used[129] = {false}; // programs, drums at 128
    for (size_t i = 0; i < n_notes; i++) {
        const StatsNote *nt = &notes[i];
        t_end = nt->onset + nt->dur > t_end ? nt->onset + nt->dur : t_end;
        p_lo = nt->pitch < p_lo ? nt->pitch : p_lo, p_hi = nt->pitch > p_hi ? nt->pitch : p_hi;
        used[nt->program < 0 ? 128 : nt->program] = true;
    }
    if (p_hi - p_lo < 12) p_lo = (p_lo + p_hi) / 2 - 6, p_hi = p_lo + 12;
    double bars = (double)t_end / REMI_TICKS_PER_BAR;
    PlotFrame f = {1100, 320, 52, 120, 28, 42, 0, bars, p_lo - 0.5, p_hi + 0.5};
    char title[512];
    snprintf(title, sizeof title, "%s: %zu notes, %.0f bars (%s)", name, n_notes, ceil(bars), source);
    frame_open(out, &f, "pianoroll", title, "bar", "pitch", TICKS_X);
    for (int p = (p_lo + 11) / 12 * 12; p <= p_hi; p += 12) // octave lines at each C
        fprintf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">C%d</text>", f.l - 4,
                fy(&f, p) + 4, p / 12 - 1);
    double row = fy(&f, 0) - fy(&f, 1), sx = fx(&f, 1.0 / REMI_TICKS_PER_BAR) - fx(&f, 0);
    for (size_t i = 0; i < n_notes; i++) {
        const StatsNote *nt = &notes[i];
        fprintf(out, "<rect class=\"note\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                fx(&f, (double)nt->onset / REMI_TICKS_PER_BAR), fy(&f, nt->pitch + 0.5), fmax(nt->dur * sx, 0.6),
                fmax(row, 0.5), nt->program < 0 ? "#444" : palette[nt->program % N_PALETTE]);
    }
    if (mark >= 0 && mark <= t_end) {
        double x = fx(&f, (double)mark / REMI_TICKS_PER_BAR);
        fprintf(out, "<line class=\"mark\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\"/>\n", x, fy(&f, f.y1), x,
                fy(&f, f.y0));
        fprintf(out, "<text class=\"tick\" x=\"%.2f\" y=\"%.1f\">prompt end</text>\n", x + 3, fy(&f, f.y1) + 10);
    }
    int n_leg = 0;
    for (int p = 0; p <= 128 && n_leg < 12; p++) {
        if (!used[p]) continue;
        char label[32];
        if (p == 128) snprintf(label, sizeof label, "drums");
        else snprintf(label, sizeof label, "program %d", p);
        legend(out, &f, n_leg++, label, p == 128 ? "#444" : palette[p % N_PALETTE], false);
    }
    fputs("</svg>\n", out);
}
