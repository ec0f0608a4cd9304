package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart file names, without the format's extension.
const (
	ChartCorrectPerSec = "correct-per-s"     // bars: correct answers per second, per strategy
	ChartScore         = "score"             // lines: score over time, per strategy
	ChartAnswers       = "correct-over-time" // lines: correct answers per second over time
)

// ChartFormats are the chart formats Write accepts.
var ChartFormats = []string{"svg", "png"}

const (
	chartWidth  = 8 * vg.Inch
	chartHeight = 4.5 * vg.Inch
	legendWidth = 1.6 * vg.Inch // the line charts' legend, right of the plot
)

func init() {
	// Sans-serif reads better at chart sizes than gonum's default serif. Nothing else
	// in gameday draws with gonum/plot.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	plotter.DefaultFont = plot.DefaultFont
}

// chart is a plot and, for line charts, the legend drawn beside it.
type chart struct {
	p      *plot.Plot
	legend *plot.Legend
}

// writeCharts writes the three charts into dir and returns their paths.
func writeCharts(dir string, results []Result, format string) ([]string, error) {
	if !slices.Contains(ChartFormats, format) {
		return nil, fmt.Errorf("chart format %q: want svg or png", format)
	}
	var files []string
	for _, c := range []struct {
		name string
		make func([]Result) (chart, error)
	}{
		{ChartCorrectPerSec, barsCorrectPerSec},
		{ChartScore, func(rs []Result) (chart, error) {
			return lines(rs, "Score over time", "points", scoreSeries)
		}},
		{ChartAnswers, func(rs []Result) (chart, error) {
			return lines(rs, "Correct answers per second over time", "correct/s", correctSeries)
		}},
	} {
		ch, err := c.make(results)
		if err != nil {
			return files, fmt.Errorf("chart %s: %w", c.name, err)
		}
		path := filepath.Join(dir, c.name+"."+format)
		if err := ch.save(path, format); err != nil {
			return files, fmt.Errorf("chart %s: %w", c.name, err)
		}
		files = append(files, path)
	}
	return files, nil
}

// save draws the chart, its legend in a column on the right, into path.
func (ch chart) save(path, format string) error {
	c, err := draw.NewFormattedCanvas(chartWidth, chartHeight, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	dc.SetColor(color.White) // under the legend too, for dark page themes
	dc.Fill(dc.Rectangle.Path())
	if ch.legend == nil {
		ch.p.Draw(dc)
	} else {
		ch.p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
		ch.legend.Draw(draw.Crop(dc, chartWidth-legendWidth+vg.Points(8), 0, 0, -vg.Points(24)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newPlot returns a plot with tick labels without trailing zeros.
func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Tick.Marker = plainTicks{}
	p.X.Tick.Marker = plainTicks{}
	return p
}

// plainTicks are plot.DefaultTicks labelled "250" rather than "250.00".
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		}
	}
	return ticks
}

// barsCorrectPerSec draws one bar per strategy; a strategy that was not measured keeps
// its place with no bar and its status in its label.
func barsCorrectPerSec(results []Result) (chart, error) {
	p := newPlot("Correct answers per second, by caching strategy", "correct/s")
	p.Y.Min = 0
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // no lines through the bars
	p.Add(grid)
	if len(results) == 0 {
		return chart{p: p}, nil
	}
	vals := make(plotter.Values, len(results))
	names := make([]string, len(results))
	labels := make([]string, len(results))
	xys := make(plotter.XYs, len(results))
	for i, r := range results {
		names[i] = r.Strategy
		if r.Status == StatusOK {
			vals[i] = r.CorrectPerSec
			labels[i] = fmt.Sprintf("%.1f", r.CorrectPerSec)
		} else {
			names[i] += " (" + r.Status + ")"
		}
		xys[i] = plotter.XY{X: float64(i), Y: vals[i]}
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return chart{}, err
	}
	bars.Color = plotutil.Color(2)
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return chart{}, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XCenter // over the bar's middle
	}
	l.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(l)
	if top := slices.Max(vals); top > 0 {
		p.Y.Max = top * 1.12 // room for the labels
	}
	return chart{p: p}, nil
}

// lines draws the series of each measured strategy, one colour and dash pattern per
// strategy, keeping a strategy's style when others were skipped.
func lines(results []Result, title, ylabel string, series func(Result) plotter.XYs) (chart, error) {
	p := newPlot(title, ylabel)
	p.X.Label.Text = "seconds"
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	for i, r := range results {
		if r.Status != StatusOK {
			continue
		}
		xys := series(r)
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return chart{}, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		legend.Add(r.Strategy, l)
	}
	return chart{p: p, legend: &legend}, nil
}

// elapsed is a snapshot's time since the start in seconds.
func elapsed(s float64, second int) float64 {
	if s > 0 {
		return s
	}
	return float64(second)
}

// scoreSeries is the score at each snapshot, the final one included.
func scoreSeries(r Result) plotter.XYs {
	xys := make(plotter.XYs, 0, len(r.Series))
	for _, s := range r.Series {
		xys = append(xys, plotter.XY{X: elapsed(s.ElapsedS, s.Second), Y: s.Score})
	}
	return xys
}

// correctSeries is the rate of correct answers between consecutive snapshots, plotted
// at the end of each interval. The final snapshot, which only collects the stragglers
// after the arrivals stopped, is left out.
func correctSeries(r Result) plotter.XYs {
	var xys plotter.XYs
	var prevT float64
	var prevN int64
	for _, s := range r.Series {
		if s.Final {
			break
		}
		t := elapsed(s.ElapsedS, s.Second)
		if dt := t - prevT; dt > 0 {
			xys = append(xys, plotter.XY{X: t, Y: float64(s.Correct-prevN) / dt})
		}
		prevT, prevN = t, s.Correct
	}
	return xys
}

// CheckChart reports what is wrong with a chart file that Write produced, or nil: an
// SVG must be XML whose root element is <svg>, a PNG must decode to at least 100×100.
// Tests of this package and of the gameday command read the charts with it.
func CheckChart(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	switch filepath.Ext(path) {
	case ".svg":
		d := xml.NewDecoder(bytes.NewReader(b))
		root := ""
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: not XML: %w", path, err)
			}
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Local
			}
		}
		if root != "svg" {
			return fmt.Errorf("%s: root element %q, want svg", path, root)
		}
	case ".png":
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if r := img.Bounds(); r.Dx() < 100 || r.Dy() < 100 {
			return fmt.Errorf("%s: %v, want at least 100×100", path, r)
		}
	default:
		return fmt.Errorf("%s: not a chart", path)
	}
	return nil
}
