package activities

import "sort"

// Span is a half-open run [From, To) of range indices.
type Span struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Progress is the Download heartbeat: which ranges of the staging file are written and synced. A
// retry trusts it only when Size and RangeSize match and the staging file has exactly Size bytes.
type Progress struct {
	Size      int64  `json:"size"`
	RangeSize int64  `json:"range_size"`
	Done      []Span `json:"done"`
	// Partial holds, for ranges begun but not finished, how many bytes from the range's start are
	// written and synced; a retry fetches only the rest of such a range.
	Partial map[int]int64 `json:"partial,omitempty"`
	// BytesDone and BytesPerSec are for people watching (dashboard, CLI); they are not trusted.
	BytesDone   int64   `json:"bytes_done"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	Ranges      int     `json:"ranges"`
	Connections int     `json:"connections"`
}

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

// Spans compresses a set of done range indices into sorted, merged spans.
func Spans(done map[int]bool) []Span {
	idx := make([]int, 0, len(done))
	for i, ok := range done {
		if ok {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	var out []Span
	for _, i := range idx {
		if n := len(out); n > 0 && out[n-1].To == i {
			out[n-1].To++
			continue
		}
		out = append(out, Span{From: i, To: i + 1})
	}
	return out
}

// DoneSet expands spans into a set of indices below n; indices out of range are dropped.
func DoneSet(spans []Span, n int) map[int]bool {
	done := map[int]bool{}
	for _, s := range spans {
		for i := max(s.From, 0); i < s.To && i < n; i++ {
			done[i] = true
		}
	}
	return done
}

// Missing lists, in order, the ranges of n not in done.
func Missing(done map[int]bool, n int) []int {
	var out []int
	for i := 0; i < n; i++ {
		if !done[i] {
			out = append(out, i)
		}
	}
	return out
}

// DoneBytes is how many bytes the done ranges cover.
func DoneBytes(done map[int]bool, size, rangeSize int64) int64 {
	var b int64
	for i := range done {
		off, end := RangeBounds(i, size, rangeSize)
		if end > off {
			b += end - off
		}
	}
	return b
}
