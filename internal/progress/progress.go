// Package progress is the Download activity's heartbeat: which ranges of the staging file are
// written, which a retry resumes from and the dashboard and CLI show.
package progress

import "time"

// Span is a half-open run [From, To) of range indices.
type Span struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Progress is the Download heartbeat: which ranges of the staging file are written and synced. A
// retry trusts it only when Size, RangeSize and ModTime match the remote file and the staging file
// has exactly Size bytes.
type Progress struct {
	Size      int64 `json:"size"`
	RangeSize int64 `json:"range_size"`
	// ModTime is the remote file's modification time when these bytes were read.
	ModTime time.Time `json:"mtime"`
	Done    []Span    `json:"done"`
	// Partial holds, for ranges begun but not finished, how many bytes from the range's start are
	// written and synced; a retry fetches only the rest of such a range.
	Partial map[int]int64 `json:"partial,omitempty"`
	// BytesDone and BytesPerSec are for people watching (dashboard, CLI); they are not trusted.
	BytesDone   int64   `json:"bytes_done"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	Ranges      int     `json:"ranges"`
	Connections int     `json:"connections"`
}
