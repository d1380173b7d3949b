package bench

import (
	"math"
	"slices"
	"time"
)

// millis converts durations to float milliseconds.
func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// summarize returns count, nearest-rank percentiles, max and mean of
// samples (milliseconds). An empty input gives zeros.
func summarize(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	sum := 0.0
	for _, v := range sorted {
		sum += v
	}
	return Summary{
		Count: len(sorted),
		P50:   percentile(sorted, 50),
		P90:   percentile(sorted, 90),
		P99:   percentile(sorted, 99),
		Max:   sorted[len(sorted)-1],
		Mean:  sum / float64(len(sorted)),
	}
}

// percentile is the nearest-rank percentile p (0–100] of sorted samples:
// the smallest sample with at least p% of the samples at or below it.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// bucket is a cumulative histogram bucket: Count observations ≤ UpperBound.
type bucket struct {
	UpperBound float64
	Count      float64
}

// histogramQuantile estimates quantile q (0–1) from cumulative buckets
// sorted by bound, interpolating linearly within the bucket that holds it,
// like Prometheus' histogram_quantile. Observations above the last finite
// bound are reported at that bound.
func histogramQuantile(q float64, buckets []bucket) float64 {
	if len(buckets) == 0 {
		return 0
	}
	total := buckets[len(buckets)-1].Count
	if total == 0 {
		return 0
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for _, b := range buckets {
		if b.Count >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lowerBound
			}
			if b.Count == lowerCount {
				return b.UpperBound
			}
			return lowerBound + (b.UpperBound-lowerBound)*(rank-lowerCount)/(b.Count-lowerCount)
		}
		lowerBound, lowerCount = b.UpperBound, b.Count
	}
	return lowerBound
}

// ratio is a / b, or 0 when b is 0 (a figure that is missing, not infinite).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
