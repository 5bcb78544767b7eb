// Package job parses and validates the file-job messages that upstream systems publish to Kafka.
// Validation is strict because a job's path later names a local file and an S3 key.
package job

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a message and its fields.
const (
	MaxMessageBytes = 64 << 10 // larger messages are refused
	MaxPathBytes    = 4095     // PATH_MAX less its terminating NUL
	MaxSegmentBytes = 255
	MaxIDBytes      = 200
	MaxKeyBytes     = 1024 // S3 key limit
)

// Job is one validated file job.
type Job struct {
	ID         string `json:"id"`
	RemotePath string `json:"remote_path"`        // absolute, clean, on the SFTP server
	MD5        string `json:"md5,omitempty"`      // lowercase hex, 32 chars, or "" when the producer sent none
	Size       int64  `json:"size"`               // -1 when unknown
	DestKey    string `json:"dest_key,omitempty"` // S3 key; "" means: derive from RemotePath
}

// Key returns the S3 object key, which is also the destination path under completed/: DestKey if
// set, else RemotePath without its leading slash.
func (j Job) Key() string {
	if j.DestKey != "" {
		return j.DestKey
	}
	return strings.TrimPrefix(j.RemotePath, "/")
}

// WorkflowID returns "file-" + j.ID: one workflow per job, whatever the redeliveries.
func (j Job) WorkflowID() string { return "file-" + j.ID }

// ValidationError says why a message was refused. Reason is a short stable code (bad_json,
// too_large, bad_path, bad_md5, bad_id, bad_size, bad_dest_key, missing_field, mixed_format); Detail
// a sentence for people.
type ValidationError struct {
	Reason string
	Detail string
}

func (e *ValidationError) Error() string { return e.Reason + ": " + e.Detail }

func refuse(reason, format string, args ...any) error {
	return &ValidationError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// wire is every field of both formats; pointers tell absent from empty.
type wire struct {
	ID         *string          `json:"id"`
	RemotePath *string          `json:"remote_path"`
	MD5        *string          `json:"md5"`
	Size       *json.RawMessage `json:"size"`
	DestKey    *string          `json:"dest_key"`
	// The KafkaSync seed format.
	Name     *string `json:"name"`
	Location *string `json:"location"`
	Hash     *string `json:"hash"`
}

// Parse validates one message: key is the Kafka message key (may be nil), value the JSON body. Both
// formats are accepted: {id, remote_path, md5, size, dest_key} and the older {name, location, hash}.
// The job ID is the id field, else the key, else derived from the path and checksum. Every refusal
// is a *ValidationError.
func Parse(key, value []byte) (Job, error) {
	if len(value) > MaxMessageBytes {
		return Job{}, refuse("too_large", "message is %d bytes, limit %d", len(value), MaxMessageBytes)
	}
	if len(bytes.TrimSpace(value)) == 0 {
		return Job{}, refuse("bad_json", "empty message")
	}
	if !utf8.Valid(value) {
		return Job{}, refuse("bad_json", "message is not UTF-8")
	}
	trimmed := bytes.TrimSpace(value)
	if trimmed[0] != '{' {
		return Job{}, refuse("bad_json", "message is not a JSON object")
	}
	if err := noDuplicateKeys(trimmed); err != nil {
		return Job{}, err
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Job{}, refuse("bad_json", "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Job{}, refuse("bad_json", "trailing data after the JSON object")
	}

	current := w.ID != nil || w.RemotePath != nil || w.MD5 != nil || w.Size != nil || w.DestKey != nil
	legacy := w.Name != nil || w.Location != nil || w.Hash != nil
	j := Job{Size: -1}
	var rawHash string
	switch {
	case current && legacy:
		return Job{}, refuse("mixed_format", "fields of the current format (id, remote_path, md5, size, dest_key) mixed with the legacy one (name, location, hash)")
	case legacy:
		if w.Name == nil || w.Location == nil {
			return Job{}, refuse("missing_field", "legacy format needs name and location")
		}
		name, loc := *w.Name, *w.Location
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return Job{}, refuse("bad_path", "name %q must be one path segment", name)
		}
		if err := checkPath(loc, true); err != nil {
			return Job{}, err
		}
		j.RemotePath = strings.TrimSuffix(loc, "/") + "/" + name
		if w.Hash != nil {
			rawHash = *w.Hash
		}
	default:
		if w.RemotePath == nil {
			return Job{}, refuse("missing_field", "remote_path is required")
		}
		j.RemotePath = *w.RemotePath
		if w.MD5 != nil {
			rawHash = *w.MD5
		}
		if w.Size != nil {
			var n int64
			if err := json.Unmarshal(*w.Size, &n); err != nil {
				return Job{}, refuse("bad_size", "size %s is not a whole number of bytes", string(*w.Size))
			}
			if n < 0 {
				return Job{}, refuse("bad_size", "size %d is negative", n)
			}
			j.Size = n
		}
		if w.DestKey != nil {
			if err := checkKey(*w.DestKey); err != nil {
				return Job{}, err
			}
			j.DestKey = *w.DestKey
		}
	}
	if err := checkPath(j.RemotePath, false); err != nil {
		return Job{}, err
	}
	if j.DestKey == "" && len(j.RemotePath)-1 > MaxKeyBytes {
		return Job{}, refuse("bad_path", "path is %d bytes: as an S3 key it would exceed %d bytes (give a dest_key)", len(j.RemotePath), MaxKeyBytes)
	}
	md5, err := parseMD5(rawHash, w.Hash != nil || w.MD5 != nil)
	if err != nil {
		return Job{}, err
	}
	j.MD5 = md5

	switch {
	case w.ID != nil:
		if err := checkID(*w.ID); err != nil {
			return Job{}, err
		}
		j.ID = *w.ID
	case len(key) > 0:
		if err := checkID(string(key)); err != nil {
			return Job{}, err
		}
		j.ID = string(key)
	default:
		sum := sha256.Sum256([]byte(j.RemotePath + "\x00" + j.MD5))
		j.ID = "p-" + hex.EncodeToString(sum[:])[:24]
	}
	return j, nil
}

// checkPath accepts an absolute, clean path without "..", control characters or over-long parts.
// dir allows "/" itself.
func checkPath(p string, dir bool) error {
	switch {
	case p == "":
		return refuse("bad_path", "path is empty")
	case len(p) > MaxPathBytes:
		return refuse("bad_path", "path is %d bytes, limit %d", len(p), MaxPathBytes)
	case !utf8.ValidString(p):
		return refuse("bad_path", "path is not UTF-8")
	case hasControl(p):
		return refuse("bad_path", "path %q holds a control or invisible formatting character", p)
	case !strings.HasPrefix(p, "/"):
		return refuse("bad_path", "path %q is not absolute", p)
	case p == "/" && !dir:
		return refuse("bad_path", "path / is not a file")
	case path.Clean(p) != p:
		return refuse("bad_path", "path %q is not normalised (want %q)", p, path.Clean(p))
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == ".." {
			return refuse("bad_path", "path %q has a .. segment", p)
		}
		if len(seg) > MaxSegmentBytes {
			return refuse("bad_path", "path segment of %d bytes, limit %d", len(seg), MaxSegmentBytes)
		}
	}
	return nil
}

// checkKey accepts a relative, clean S3 key that cannot climb out of completed/.
func checkKey(k string) error {
	switch {
	case k == "":
		return refuse("bad_dest_key", "dest_key is empty")
	case len(k) > MaxKeyBytes:
		return refuse("bad_dest_key", "dest_key is %d bytes, limit %d", len(k), MaxKeyBytes)
	case !utf8.ValidString(k):
		return refuse("bad_dest_key", "dest_key is not UTF-8")
	case hasControl(k):
		return refuse("bad_dest_key", "dest_key %q holds a control character", k)
	case strings.HasPrefix(k, "/"):
		return refuse("bad_dest_key", "dest_key %q must not start with /", k)
	case path.Clean(k) != k || k == ".":
		return refuse("bad_dest_key", "dest_key %q is not normalised", k)
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == ".." {
			return refuse("bad_dest_key", "dest_key %q has a .. segment", k)
		}
		if len(seg) > MaxSegmentBytes {
			return refuse("bad_dest_key", "dest_key segment of %d bytes, limit %d", len(seg), MaxSegmentBytes)
		}
	}
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDBytes {
		return refuse("bad_id", "id must be 1 to %d bytes", MaxIDBytes)
	}
	if id[0] == '.' || id[0] == '-' {
		return refuse("bad_id", "id %q must not start with . or -", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return refuse("bad_id", "id %q: only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// parseMD5 accepts 32 hex digits, optionally prefixed "md5:", and returns them in lowercase.
func parseMD5(s string, present bool) (string, error) {
	if !present {
		return "", nil
	}
	h := s
	if algo, rest, ok := strings.Cut(s, ":"); ok {
		if !strings.EqualFold(algo, "md5") {
			return "", refuse("bad_md5", "unknown hash format %q: only md5 is supported", algo)
		}
		h = rest
	}
	if len(h) != 32 {
		return "", refuse("bad_md5", "unknown hash format: md5 is 32 hex digits, got %d characters", len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", refuse("bad_md5", "md5 %q is not hex", h)
	}
	return strings.ToLower(h), nil
}

// hasControl finds characters that have no business in a file name and can hide what a name says:
// C0 and C1 controls, invisible formatting characters (bidirectional overrides such as U+202E,
// zero-width spaces and joiners, the byte-order mark), line and paragraph separators, and U+FFFD.
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// noDuplicateKeys refuses an object that names a top-level field twice: encoding/json would keep the
// last, and two readers could disagree about the job.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return refuse("bad_json", "%v", err)
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return refuse("bad_json", "%v", err)
		}
		k, _ := t.(string)
		if seen[k] {
			return refuse("bad_json", "field %q appears twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return refuse("bad_json", "%v", err)
		}
	}
	return nil
}
