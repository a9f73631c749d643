package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations in microseconds in log-linear buckets: exact
// below 128 µs, then 64 buckets per power of two, so a quantile is off by
// at most 1/64 (1.6 %). Recording is lock-free and safe from many
// goroutines.
type Histogram struct {
	buckets [numBuckets]atomic.Uint64
	max     atomic.Int64 // µs
}

const (
	linear     = 128 // values below this have a bucket each
	perOctave  = 64
	octaves    = 40 // up to 2^46 µs, far beyond any run
	numBuckets = linear + octaves*perOctave
)

func bucketOf(us uint64) int {
	if us < linear {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // us>>shift is in [64, 128)
	i := linear + (shift-1)*perOctave + int(us>>shift) - perOctave
	return min(i, numBuckets-1)
}

// lowerBound is the smallest value of bucket i, in µs.
func lowerBound(i int) uint64 {
	if i < linear {
		return uint64(i)
	}
	shift := (i-linear)/perOctave + 1
	return uint64((i-linear)%perOctave+perOctave) << shift
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.buckets[bucketOf(uint64(us))].Add(1)
	h.raiseMax(us)
}

func (h *Histogram) raiseMax(us int64) {
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Merge adds o's counts to h, so many goroutines can each fill a histogram
// of their own and share no cache line while recording.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.buckets {
		if c := o.buckets[i].Load(); c > 0 {
			h.buckets[i].Add(c)
		}
	}
	h.raiseMax(o.max.Load())
}

// Summary is a histogram's count and quantiles.
type Summary struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summary reads the quantiles; reset empties the histogram as it reads,
// for per-interval figures.
func (h *Histogram) Summary(reset bool) Summary {
	var counts [numBuckets]uint64
	var total uint64
	for i := range h.buckets {
		if reset {
			counts[i] = h.buckets[i].Swap(0)
		} else {
			counts[i] = h.buckets[i].Load()
		}
		total += counts[i]
	}
	var maxUS int64
	if reset {
		maxUS = h.max.Swap(0)
	} else {
		maxUS = h.max.Load()
	}
	s := Summary{Count: total, Max: time.Duration(maxUS) * time.Microsecond}
	if total == 0 {
		return s
	}
	quantile := func(q float64) time.Duration {
		rank := uint64(q*float64(total-1)) + 1
		var seen uint64
		for i, c := range counts {
			if seen += c; seen >= rank {
				// The middle of the bucket, capped by the largest value seen.
				mid := (lowerBound(i) + lowerBound(i+1)) / 2
				if i < linear {
					mid = lowerBound(i)
				}
				return min(time.Duration(mid)*time.Microsecond, s.Max)
			}
		}
		return s.Max
	}
	s.P50, s.P95, s.P99 = quantile(0.50), quantile(0.95), quantile(0.99)
	return s
}
