package activities

import (
	"iter"
	"slices"
	"sort"

	"github.com/kafkasync/kafkasync/internal/progress"
)

// NumRanges is how many ranges of rangeSize cover size bytes.
func NumRanges(size, rangeSize int64) int {
	if size <= 0 {
		return 0
	}
	return int((size + rangeSize - 1) / rangeSize)
}

// RangeBounds returns the byte offsets [off, end) of range i.
func RangeBounds(i int, size, rangeSize int64) (off, end int64) {
	off = int64(i) * rangeSize
	return off, min(off+rangeSize, size)
}

// RangeSet is a set of range indices below N, kept as sorted, merged spans: its size follows the
// number of gaps, never the number of ranges, so a huge file costs no memory to plan. Not safe for
// concurrent use.
type RangeSet struct {
	N     int
	spans []progress.Span
}

// NewRangeSet holds spans clipped to [0, n), sorted and merged.
func NewRangeSet(spans []progress.Span, n int) *RangeSet {
	s := &RangeSet{N: n}
	clipped := make([]progress.Span, 0, len(spans))
	for _, sp := range spans {
		if sp.From, sp.To = max(sp.From, 0), min(sp.To, n); sp.From < sp.To {
			clipped = append(clipped, sp)
		}
	}
	sort.Slice(clipped, func(i, j int) bool { return clipped[i].From < clipped[j].From })
	for _, sp := range clipped {
		if k := len(s.spans); k > 0 && sp.From <= s.spans[k-1].To {
			s.spans[k-1].To = max(s.spans[k-1].To, sp.To)
			continue
		}
		s.spans = append(s.spans, sp)
	}
	return s
}

// Add puts range i into the set.
func (s *RangeSet) Add(i int) {
	if i < 0 || i >= s.N {
		return
	}
	k := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].To >= i })
	switch {
	case k < len(s.spans) && s.spans[k].From <= i: // inside, or right after span k
		if s.spans[k].To == i {
			s.spans[k].To++
			if k+1 < len(s.spans) && s.spans[k+1].From == i+1 {
				s.spans[k].To = s.spans[k+1].To
				s.spans = slices.Delete(s.spans, k+1, k+2)
			}
		}
	case k < len(s.spans) && s.spans[k].From == i+1: // right before span k
		s.spans[k].From = i
	default:
		s.spans = slices.Insert(s.spans, k, progress.Span{From: i, To: i + 1})
	}
}

// Has reports whether range i is in the set.
func (s *RangeSet) Has(i int) bool {
	k := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].To > i })
	return k < len(s.spans) && s.spans[k].From <= i
}

// Spans returns a copy of the set's spans.
func (s *RangeSet) Spans() []progress.Span { return slices.Clone(s.spans) }

// Len is how many ranges the set holds.
func (s *RangeSet) Len() int {
	n := 0
	for _, sp := range s.spans {
		n += sp.To - sp.From
	}
	return n
}

// Bytes is how many bytes the set's ranges cover.
func (s *RangeSet) Bytes(size, rangeSize int64) int64 {
	var b int64
	for _, sp := range s.spans {
		off, _ := RangeBounds(sp.From, size, rangeSize)
		_, end := RangeBounds(sp.To-1, size, rangeSize)
		b += end - off
	}
	return b
}

// Missing yields, in order and one at a time, the ranges below N not in the set.
func (s *RangeSet) Missing() iter.Seq[int] {
	spans := s.Spans()
	return func(yield func(int) bool) {
		next := 0
		for _, sp := range append(spans, progress.Span{From: s.N, To: s.N}) {
			for i := next; i < sp.From; i++ {
				if !yield(i) {
					return
				}
			}
			next = sp.To
		}
	}
}
