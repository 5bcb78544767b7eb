package archive

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// CopyVerified delivers every byte when they match, and holds the end back when they do not or the
// source fails, whatever the sizes of the reads.
func TestCopyVerifiedHoldsBackTheEnd(t *testing.T) {
	for _, size := range []int{0, 1, 1000, 64 << 10, 200_003} {
		body := bytes.Repeat([]byte{'k'}, size)
		s := md5.Sum(body)
		sum := hex.EncodeToString(s[:])
		for _, src := range []io.Reader{bytes.NewReader(body), iotest.OneByteReader(bytes.NewReader(body)), iotest.HalfReader(bytes.NewReader(body))} {
			var out bytes.Buffer
			got, err := CopyVerified(&out, src, sum, 4096)
			if err != nil || got != sum || !bytes.Equal(out.Bytes(), body) {
				t.Fatalf("size %d: %d bytes out, md5 %s, %v", size, out.Len(), got, err)
			}
		}
		var out bytes.Buffer
		if _, err := CopyVerified(&out, bytes.NewReader(body), "00000000000000000000000000000000", 4096); !errors.Is(err, ErrMD5Mismatch) ||
			out.Len() != max(size-4096, 0) {
			t.Fatalf("size %d, wrong md5: %d bytes out, %v", size, out.Len(), err)
		}
		out.Reset()
		failing := io.MultiReader(bytes.NewReader(body), iotest.ErrReader(errors.New("connection reset")))
		if _, err := CopyVerified(&out, failing, sum, 4096); err == nil || out.Len() > max(size-4096, 0) {
			t.Fatalf("size %d, failing source: %d bytes out, %v", size, out.Len(), err)
		}
	}
}

// Pages merge listed objects and gone jobs in byte order, as S3 lists keys.
func TestMergeIsByteOrder(t *testing.T) {
	a := []Object{{Key: "A"}, {Key: "b"}, {Key: "é"}}
	b := []Object{{Key: "Z"}, {Key: "a"}, {Key: "z"}}
	var keys []string
	for _, o := range merge(a, b) {
		keys = append(keys, o.Key)
	}
	want := []string{"A", "Z", "a", "b", "z", "é"}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("merged %v, want %v", keys, want)
		}
	}
}
