// plot: inline SVG charts for an HTML page: line plots (curves and min-max bands), bar charts with error bars, dot
// charts of values per group, and
// piano rolls of notes, each one <svg> element written to a FILE *; also the HTML escaping and number format they use.
// The caller writes the page around them and its CSS: the SVG uses the classes plot, bars, pianoroll (the <svg>),
// title, label, tick, legend, grid, axis, bar, dot, err and note. Output depends only on the arguments (no time, no
// randomness), so the same data gives the same bytes. Does not read files, owns no file format, and does not check
// write errors: the caller checks its stream once at the end (out_commit, stdout_close).
#ifndef PLOT_H
#define PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "stats.h"

// One curve over points (x[k], y[k]), k < n, or, with lo and hi set, a band from lo[k] to hi[k] (y is then unused
// by the drawing). The arrays belong to the caller; plot_line only reads them.
typedef struct PlotSeries {
    char name[96];     // legend text
    const char *color; // any SVG colour, e.g. "#1f77b4" or plot_color(i)
    double width;      // stroke width, px (curves)
    size_t n;
    double *x, *y, *lo, *hi;
} PlotSeries;

// Colour i >= 0 of a 10-colour palette (matplotlib's tab10), repeating after 10. A static string.
const char *plot_color(int i);

// Writes s to out HTML-escaped (& < > " '), valid in text and in quoted attribute values. NULL writes nothing.
void plot_esc(FILE *out, const char *s);

// A number for people in buf (48 bytes), returned: integers as such, |d| in [1e4, 1e15) without exponent ("%.0f"),
// others to 4 significant digits ("%.4g"). Never fails.
const char *plot_fmt_num(double d, char buf[48]);

// A 600 x 300 px line plot of s[0..n) with both axes from the data (y padded by 5%), bands drawn under the
// curves, a dot on each point of a series of at most 40 points, and a legend of the first 12 series in order.
// Series with n = 0 are skipped. Returns false, writing nothing, when no series has a point; the caller then says
// so in its own words. Values must be finite (the caller drops the others).
bool plot_line(FILE *out, const char *title, const char *xlabel, const char *ylabel, const PlotSeries *s, int n);

// A bar chart of n >= 1 bars: bar i has height mean[i] (from 0, so negative bars go down), an error bar ±sd[i]
// unless sd[i] is NaN, its value printed above and labels[i] under it (cut to 26 bytes and ".." past 28, never
// inside a UTF-8 sequence). Width grows with n, from 360 to 1100 px. mean[] must be finite; arrays are read only.
void plot_bars(FILE *out, const char *title, const char *ylabel, int n, const char *const labels[],
               const double mean[], const double sd[]);

// A dot chart of n >= 1 groups on a y axis fitted to the data (not from 0, so small differences show): group i
// draws its values v[i][0..n_v[i]) as dots spread across its slot, a line at mean[i] and a whisker ±sd[i] (none
// when sd[i] is NaN), with labels[i] under it (cut as plot_bars). For "do the seeds overlap": the bars hide that.
// Values and mean[] must be finite; arrays are read only.
void plot_dots(FILE *out, const char *title, const char *ylabel, int n, const char *const labels[],
               const double *const v[], const int n_v[], const double mean[], const double sd[]);

// A 1100 x 320 px piano roll of notes[0..n_notes), n_notes >= 1 (stats_extract's notes, times in REMI ticks):
// a rectangle per note, time in bars against pitch (at least an octave shown, C of each octave marked), coloured
// by program (drums grey), a legend of the first 12 programs used. Titled "NAME: N notes, B bars (SOURCE)".
// The time axis reaches at least tick span (0: the notes decide), so rolls drawn side by side can share it; with
// mark >= 0 a dashed vertical line (class mark) labelled "prompt end" is drawn at tick mark.
void plot_piano_roll(FILE *out, const char *name, const char *source, const StatsNote *notes, size_t n_notes,
                     int64_t span, int64_t mark);

#endif
