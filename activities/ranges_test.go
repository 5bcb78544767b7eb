package activities

import (
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/kafkasync/kafkasync/internal/progress"
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

func TestRangeSet(t *testing.T) {
	s := NewRangeSet([]progress.Span{{From: 7, To: 9}, {From: -3, To: 2}, {From: 1, To: 3}, {From: 5, To: 6}, {From: 8, To: 50}}, 10)
	if want := []progress.Span{{From: 0, To: 3}, {From: 5, To: 6}, {From: 7, To: 10}}; !reflect.DeepEqual(s.Spans(), want) {
		t.Fatalf("spans %v, want %v", s.Spans(), want)
	}
	if got := slices.Collect(s.Missing()); !reflect.DeepEqual(got, []int{3, 4, 6}) {
		t.Fatalf("missing %v", got)
	}
	if got := s.Bytes(95, 10); got != 65 {
		t.Fatalf("bytes %d, want 65", got)
	}
	for _, i := range []int{4, 3, 6, 20, -1} {
		s.Add(i)
	}
	if want := []progress.Span{{From: 0, To: 10}}; !reflect.DeepEqual(s.Spans(), want) || s.Len() != 10 || !s.Has(9) || s.Has(10) {
		t.Fatalf("after adds: %v", s.Spans())
	}
	// Ranges finishing out of order.
	r := NewRangeSet(nil, 100)
	for _, i := range []int{5, 3, 4, 9, 0, 1, 2, 8, 6} {
		r.Add(i)
	}
	if want := []progress.Span{{From: 0, To: 7}, {From: 8, To: 10}}; !reflect.DeepEqual(r.Spans(), want) {
		t.Fatalf("spans %v, want %v", r.Spans(), want)
	}
}

// A huge announced size costs no memory to plan: the missing ranges are produced one at a time.
func TestPlanningAHugeFileIsLazy(t *testing.T) {
	const size = int64(1) << 62
	n := NumRanges(size, 1<<20)
	s := NewRangeSet([]progress.Span{{From: 0, To: 2}}, n)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	var got []int
	for i := range s.Missing() {
		got = append(got, i)
		if len(got) == 3 {
			break
		}
	}
	runtime.ReadMemStats(&ms)
	if !reflect.DeepEqual(got, []int{2, 3, 4}) || ms.TotalAlloc-before > 1<<20 {
		t.Fatalf("first missing %v, allocated %d bytes", got, ms.TotalAlloc-before)
	}
	if b := s.Bytes(size, 1<<20); b != 2<<20 {
		t.Fatalf("bytes %d", b)
	}
}
