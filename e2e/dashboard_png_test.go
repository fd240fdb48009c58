package e2e

import (
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/kpoguard/kpoguard/internal/monitoring"
)

// picture is a panel make dashboard-png renders, by title, with the file
// it goes to and its y axis.
type picture struct{ panel, file, unit string }

// pictures are the workload's, auditPictures the audit's.
var pictures = []picture{
	{"Admissions by decision", "admissions.png", "requests per second"},
	{"Findings by rule (audit shows what enforce would do)", "findings.png", "findings per second"},
	{"Image lookups by result", "lookups.png", "lookups per second"},
	{"kpoguard latency p99", "latency.png", "seconds"},
}

var auditPictures = []picture{
	{"Running task pods with findings, by rule and mode", "audit.png", "running task pods"},
}

// pictureRateInterval is what Grafana makes $__rate_interval of a 1s
// scrape interval: four scrapes.
const pictureRateInterval = "4s"

// renderDashboard draws the pictures' panels from Prometheus' range
// queries over [from, to], as Grafana would, into dir, with a dashed
// line where each phase began.
func renderDashboard(t *testing.T, api promv1.API, d *monitoring.Dashboard, pictures []picture, phases []phase, from, to time.Time, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	queries := d.Queries()
	for _, pic := range pictures {
		p := plot.New()
		p.Title.Text = pic.panel
		p.X.Label.Text = "seconds into the workload"
		p.Y.Label.Text = pic.unit
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		lines, top := 0, 0.0
		for _, q := range queries {
			if q.Panel.Title != pic.panel {
				continue
			}
			expr, err := monitoring.Expand(q.Expr, map[string]string{"__rate_interval": pictureRateInterval, "namespace": ".*"})
			if err != nil {
				t.Fatal(err)
			}
			value, _, _, err := api.QueryRange(t.Context(), expr, promv1.Range{Start: from, End: to, Step: promInterval})
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			matrix, _ := value.(model.Matrix)
			for _, s := range matrix {
				xys, high := points(s, from)
				if high == 0 {
					continue // a series that stayed at zero says nothing here
				}
				top = math.Max(top, high)
				line, err := plotter.NewLine(xys)
				if err != nil {
					t.Fatal(err)
				}
				line.Color = plotutil.Color(lines)
				// Dashes tell apart series that run on top of each other.
				line.Dashes = plotutil.Dashes(lines)
				line.Width = vg.Points(1.5)
				p.Add(line)
				p.Legend.Add(legend(q.LegendFormat, s.Metric), line)
				lines++
			}
		}
		if lines == 0 {
			t.Errorf("%s: nothing to draw", pic.panel)
			continue
		}
		// Room above the data for the phases' names and the legend.
		p.Y.Min, p.Y.Max = 0, top*1.6
		addPhases(t, p, phases, from, top*1.1)
		// 600x300 points are 800x400 pixels at the default 96 dpi.
		if err := p.Save(600, 300, filepath.Join(dir, pic.file)); err != nil {
			t.Fatal(err)
		}
	}
}

// addPhases draws a dashed line up to y where each phase began, named.
func addPhases(t *testing.T, p *plot.Plot, phases []phase, from time.Time, y float64) {
	t.Helper()
	names := plotter.XYLabels{}
	for _, ph := range phases {
		x := ph.at.Sub(from).Seconds()
		line, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: y}})
		if err != nil {
			t.Fatal(err)
		}
		line.Color = color.Gray{Y: 140}
		line.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(line)
		names.XYs = append(names.XYs, plotter.XY{X: x, Y: y})
		names.Labels = append(names.Labels, ph.name)
	}
	labels, err := plotter.NewLabels(names)
	if err != nil {
		t.Fatal(err)
	}
	p.Add(labels)
}

// points are a series' samples as seconds since from, NaN ones (a
// quantile without requests) left out, and their highest value.
func points(s *model.SampleStream, from time.Time) (plotter.XYs, float64) {
	var xys plotter.XYs
	high := 0.0
	for _, v := range s.Values {
		y := float64(v.Value)
		if math.IsNaN(y) {
			continue
		}
		high = math.Max(high, y)
		xys = append(xys, plotter.XY{X: v.Timestamp.Time().Sub(from).Seconds(), Y: y})
	}
	return xys, high
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend fills a panel's legendFormat with a series' labels, as Grafana.
func legend(format string, m model.Metric) string {
	if format == "" {
		return m.String()
	}
	return strings.TrimSpace(legendLabel.ReplaceAllStringFunc(format, func(s string) string {
		return string(m[model.LabelName(legendLabel.FindStringSubmatch(s)[1])])
	}))
}
