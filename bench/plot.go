package bench

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// wayColors tell the ways apart; concurrency is told by the dash pattern.
var wayColors = map[string]color.Color{
	WayDirect:    color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	WayNoWebhook: color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
	WayPodbridge: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// plotLatencies draws the cumulative distribution of create latency of
// every series on a logarithmic time axis and saves it as a PNG.
func plotLatencies(series []CreateSeries, path string) error {
	p := plot.New()
	p.Title.Text = "Pod create latency: direct vs podbridge"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of creates ≤ latency"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	concurrencies := []int{}
	for _, s := range series {
		if !slices.Contains(concurrencies, s.Concurrency) {
			concurrencies = append(concurrencies, s.Concurrency)
		}
	}
	plotted := 0
	for _, s := range series {
		if len(s.SamplesMs) == 0 {
			continue
		}
		plotted++
		line, err := plotter.NewLine(cdf(s.SamplesMs))
		if err != nil {
			return fmt.Errorf("plotting %s: %w", s.Way, err)
		}
		line.Color = wayColors[s.Way]
		line.Width = vg.Points(1.5)
		if i := slices.Index(concurrencies, s.Concurrency); i > 0 {
			line.Dashes = []vg.Length{vg.Points(float64(2 + 3*i)), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s, concurrency %d", s.Way, s.Concurrency), line)
	}
	if plotted == 0 {
		// An empty log axis has no range: say so on a linear one.
		p.Title.Text += " (no samples: the run failed before scenario 1 finished)"
		p.X.Scale, p.X.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		p.X.Min, p.X.Max = 0, 1
	}
	if err := p.Save(9*vg.Inch, 5.5*vg.Inch, path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// cdf is the empirical cumulative distribution of samples, which must be
// positive for the log axis.
func cdf(samples []float64) plotter.XYs {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	xys := make(plotter.XYs, len(sorted))
	for i, v := range sorted {
		xys[i] = plotter.XY{X: max(v, 0.001), Y: float64(i+1) / float64(len(sorted))}
	}
	return xys
}
