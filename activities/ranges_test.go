package activities

import (
	"reflect"
	"testing"
)

func TestNumRangesAndBounds(t *testing.T) {
	for _, tc := range []struct {
		size, rs int64
		n        int
		last     [2]int64
	}{
		{0, 10, 0, [2]int64{}},
		{1, 10, 1, [2]int64{0, 1}},
		{10, 10, 1, [2]int64{0, 10}},
		{11, 10, 2, [2]int64{10, 11}},
		{64 << 20, 1 << 20, 64, [2]int64{63 << 20, 64 << 20}},
	} {
		n := NumRanges(tc.size, tc.rs)
		if n != tc.n {
			t.Fatalf("NumRanges(%d,%d) = %d, want %d", tc.size, tc.rs, n, tc.n)
		}
		if n == 0 {
			continue
		}
		off, end := RangeBounds(n-1, tc.size, tc.rs)
		if [2]int64{off, end} != tc.last {
			t.Fatalf("last range of %d/%d = [%d,%d), want %v", tc.size, tc.rs, off, end, tc.last)
		}
		// The ranges tile the file exactly.
		var total int64
		for i := 0; i < n; i++ {
			o, e := RangeBounds(i, tc.size, tc.rs)
			total += e - o
		}
		if total != tc.size {
			t.Fatalf("ranges cover %d bytes of %d", total, tc.size)
		}
	}
}

func TestSpansRoundTrip(t *testing.T) {
	done := map[int]bool{0: true, 1: true, 2: true, 5: true, 7: true, 8: true, 9: false}
	spans := Spans(done)
	want := []Span{{0, 3}, {5, 6}, {7, 9}}
	if !reflect.DeepEqual(spans, want) {
		t.Fatalf("Spans = %v, want %v", spans, want)
	}
	back := DoneSet(spans, 10)
	if len(back) != 6 || !back[8] || back[9] || back[3] {
		t.Fatalf("DoneSet = %v", back)
	}
	if got := Missing(back, 10); !reflect.DeepEqual(got, []int{3, 4, 6, 9}) {
		t.Fatalf("Missing = %v", got)
	}
	if got := DoneBytes(back, 95, 10); got != 60 {
		t.Fatalf("DoneBytes = %d, want 60", got)
	}
	// Spans from a heartbeat of a different plan are clipped, never trusted beyond n.
	if got := DoneSet([]Span{{-3, 2}, {8, 50}}, 10); len(got) != 4 || got[-1] || got[10] {
		t.Fatalf("clipped DoneSet = %v", got)
	}
}
