// Package samplefile writes files of pseudo-random bytes (fast, incompressible, reproducible from a
// seed) for the dev stack's demo, the tests and the benchmark, and hashes files.
package samplefile

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Write creates file (and its folders) with size bytes drawn from seed and returns their MD5.
func Write(file string, size int64, seed uint64) (string, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h := md5.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8(s), size); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

// MD5 returns the MD5 of file and its size.
func MD5(file string) (string, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
