package server

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// What the templates draw: the tree, the timeline, the charts, and the
// functions that format times and numbers.

var uiFuncs = template.FuncMap{
	"stamp":  stamp,
	"pstamp": func(t *time.Time) string { return stampPtr(t) },
	"ago":    ago,
	"dur":    fmtDur,
	"ms":     func(ms float64) string { return fmtDur(time.Duration(ms * float64(time.Millisecond))) },
	"num":    fmtNum,
	"bytes":  fmtBytes,
	"has":    func(v []string, x string) bool { return containsString(v, x) },
	"dict2":  func(n *treeItem, here procedure.ID) treeCtx { return treeCtx{Node: n, Here: here} },
}

// treeCtx is a tree node as the recursive template sees it, with the
// procedure whose page it is.
type treeCtx struct {
	Node *treeItem
	Here procedure.ID
}

func containsString(v []string, x string) bool {
	for _, s := range v {
		for _, part := range strings.Split(s, ",") {
			if part == x {
				return true
			}
		}
	}
	return false
}

// stamp is a time as the UI shows it: UTC, to the millisecond.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return stamp(*t)
}

// ago is how long before now t was, rounded for a person.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmtDur(time.Since(t))
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func fmtNum(f float64) string {
	switch {
	case f == 0:
		return "0"
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 1:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i-1])
}

// treeItem is one procedure of a tree with its children, for the nested
// list the page draws.
type treeItem struct {
	TreeNode
	Kids []*treeItem
}

// nestTree turns the depth-first list of a tree into nested items: the
// roots (one, unless the store lost a parent).
func nestTree(nodes []TreeNode) []*treeItem {
	var roots, stack []*treeItem
	for _, n := range nodes {
		it := &treeItem{TreeNode: n}
		for len(stack) > 0 && stack[len(stack)-1].Depth >= n.Depth {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			roots = append(roots, it)
		} else {
			p := stack[len(stack)-1]
			p.Kids = append(p.Kids, it)
		}
		stack = append(stack, it)
	}
	return roots
}

// Timeline geometry (SVG user units).
const (
	tlLabel = 160 // the state names' column
	tlBars  = 420 // the bars' width at most
	tlRow   = 22
)

// timeline is a procedure's steps drawn as a Gantt chart: each step a
// bar from the previous step's commit (or the creation) to its own, its
// width its duration; a rollback's bar after the steps it undoes.
type timeline struct {
	Rows          []timelineRow
	Width, Height int
	BarsAt        int
	Total         time.Duration
}

type timelineRow struct {
	State    string
	Rollback bool // the step undid State
	At       time.Time
	Dur      time.Duration
	X, W     float64 // the bar
	Y        int     // the row's top
	TextY    int
	LabelX   float64 // where the duration is written
}

func timelineOf(created time.Time, history []HistoryStep) timeline {
	tl := timeline{Width: tlLabel + tlBars + 90, BarsAt: tlLabel}
	if len(history) == 0 {
		return tl
	}
	hist := Events(history)
	start := created
	if start.IsZero() || hist[0].At.Before(start) {
		start = hist[0].At
	}
	tl.Total = hist[len(hist)-1].At.Sub(start)
	prev := start
	for i, h := range hist {
		r := timelineRow{State: h.State, Rollback: h.Rollback, At: h.At, Dur: h.At.Sub(prev), Y: i * tlRow, TextY: i*tlRow + 15}
		if r.Dur < 0 {
			r.Dur = 0
		}
		r.X = tlLabel + scale(prev.Sub(start), tl.Total)
		r.W = max(scale(r.Dur, tl.Total), 2)
		r.LabelX = r.X + r.W + 4
		tl.Rows = append(tl.Rows, r)
		prev = h.At
	}
	tl.Height = len(hist) * tlRow
	return tl
}

// scale maps d within total onto the bars' width.
func scale(d, total time.Duration) float64 {
	if total <= 0 {
		return 0
	}
	return float64(tlBars) * float64(d) / float64(total)
}

// Chart geometry (SVG user units).
const (
	chartW = 200
	chartH = 70
)

// chart is one small line chart of the engine page, drawn from the
// sampler's samples.
type chart struct {
	Title  string
	Unit   string
	Points string // the polyline's points ("" without samples)
	Last   float64
	Max    float64
	Span   time.Duration
	W, H   int
}

// charts draws the engine page's charts from samples (oldest first).
func charts(samples []Sample) []chart {
	series := []struct {
		title, unit string
		v           func(Sample) float64
	}{
		{"steps", "/s", func(s Sample) float64 { return s.Steps }},
		{"finished", "/s", func(s Sample) float64 { return s.Finished }},
		{"commits", "/s", func(s Sample) float64 { return s.Commits }},
		{"step p99", "ms", func(s Sample) float64 { return s.StepP99Ms }},
		{"fsync p99", "ms", func(s Sample) float64 { return s.FsyncP99Ms }},
	}
	var span time.Duration
	if n := len(samples); n > 1 {
		span = samples[n-1].At.Sub(samples[0].At)
	}
	out := make([]chart, 0, len(series))
	for _, se := range series {
		vals := make([]float64, len(samples))
		for i, s := range samples {
			vals[i] = se.v(s)
		}
		c := chart{Title: se.title, Unit: se.unit, Span: span, W: chartW, H: chartH}
		c.Points, c.Max = polyline(vals)
		if len(vals) > 0 {
			c.Last = vals[len(vals)-1]
		}
		out = append(out, c)
	}
	return out
}

// polyline returns the points of vals across the chart (the highest value
// at the top, 0 at the bottom) and the highest value.
func polyline(vals []float64) (string, float64) {
	if len(vals) == 0 {
		return "", 0
	}
	top := 0.0
	for _, v := range vals {
		top = max(top, v)
	}
	var b strings.Builder
	for i, v := range vals {
		x := 0.0
		if len(vals) > 1 {
			x = float64(chartW) * float64(i) / float64(len(vals)-1)
		}
		y := float64(chartH)
		if top > 0 {
			y = float64(chartH) - float64(chartH-4)*v/top
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	return b.String(), top
}
