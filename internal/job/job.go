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
	"regexp"
	"slices"
	"strings"
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
	// Source names the SFTP source the file is on; "" is the source named "default".
	Source string `json:"source,omitempty"`
	// KeyPrefix is the source's key_prefix, set by the Policy, never by the message.
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// HeaderSubmittedBy, on a job message the dashboard publishes, names the account that submitted it.
const HeaderSubmittedBy = "submitted_by"

// DefaultSource is the source of a message that names none.
const DefaultSource = "default"

// Key returns the S3 object key: the source's key prefix, then DestKey if set, else RemotePath
// without its leading slash.
func (j Job) Key() string {
	if j.DestKey != "" {
		return j.KeyPrefix + j.DestKey
	}
	return j.KeyPrefix + strings.TrimPrefix(j.RemotePath, "/")
}

// SourceName is j.Source, "default" when empty.
func (j Job) SourceName() string { return SourceName(j.Source) }

// SourceName names a source as stored: "" is the default source.
func SourceName(source string) string {
	if source == "" {
		return DefaultSource
	}
	return source
}

// ValidSource says whether name can name a source: lower-case letters, digits and -, at most 63.
func ValidSource(name string) bool { return sourceName.MatchString(name) }

// WorkflowID returns "file-" + j.ID: one workflow per job, whatever the redeliveries.
func (j Job) WorkflowID() string { return "file-" + j.ID }

// ValidationError says why a message was refused. Reason is a short stable code (bad_json,
// too_large, bad_path, bad_md5, bad_id, bad_size, bad_dest_key, missing_field, mixed_format,
// bad_source, unknown_source, path_not_allowed, key_not_allowed); Detail a sentence for people.
type ValidationError struct {
	Reason string
	Detail string
}

func (e *ValidationError) Error() string { return e.Reason + ": " + e.Detail }

func refuse(reason, format string, args ...any) error {
	return &ValidationError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// The exact field names of both formats. encoding/json would also match other cases and
// look-alike letters (ſ for s, the Kelvin sign for k), so names are checked before decoding.
var (
	currentFields = []string{"id", "remote_path", "md5", "size", "dest_key", "source"}
	legacyFields  = []string{"name", "location", "hash"}
)

// wire is every field of both formats; pointers tell absent from empty.
type wire struct {
	ID         *string          `json:"id"`
	RemotePath *string          `json:"remote_path"`
	MD5        *string          `json:"md5"`
	Size       *json.RawMessage `json:"size"`
	DestKey    *string          `json:"dest_key"`
	Source     *string          `json:"source"`
	// The KafkaSync seed format.
	Name     *string `json:"name"`
	Location *string `json:"location"`
	Hash     *string `json:"hash"`
}

// Policy adds the deployment's own limits to the rules every job follows. The zero Policy allows
// every path and key.
type Policy struct {
	// Sources are the sources a job may name; nil: any well-formed name, with no limits.
	Sources map[string]SourcePolicy
	// AllowedKeyPrefixes: when set, a job's S3 key must start with one of these strings.
	AllowedKeyPrefixes []string
}

// SourcePolicy is what one source allows.
type SourcePolicy struct {
	// AllowedPaths: when set, a job's remote_path must be one of these directories or below one.
	AllowedPaths []string
	// KeyPrefix goes before every key of the source's jobs.
	KeyPrefix string
}

// Parse validates one message with the zero Policy.
func Parse(key, value []byte) (Job, error) { return Policy{}.Parse(key, value) }

// Parse validates one message: key is the Kafka message key (may be nil), value the JSON body. Both
// formats are accepted: {id, remote_path, md5, size, dest_key} and the older {name, location, hash}.
// The job ID is the id field, else the key, else derived from the path and checksum. Every refusal
// is a *ValidationError.
func (p Policy) Parse(key, value []byte) (Job, error) {
	w, err := decode(value)
	if err != nil {
		return Job{}, err
	}
	var j Job
	for _, rule := range []func(*wire, *Job) error{
		oneFormat, remotePath, size, destKey, md5Field, p.source, p.pathAllowed, p.keyAllowed,
	} {
		if err := rule(w, &j); err != nil {
			return Job{}, err
		}
	}
	if err := jobID(key, w, &j); err != nil {
		return Job{}, err
	}
	return j, nil
}

// decode checks the message is one UTF-8 JSON object of known, exact, distinct field names.
func decode(value []byte) (*wire, error) {
	if len(value) > MaxMessageBytes {
		return nil, refuse("too_large", "message is %d bytes, limit %d", len(value), MaxMessageBytes)
	}
	trimmed := bytes.TrimSpace(value)
	switch {
	case len(trimmed) == 0:
		return nil, refuse("bad_json", "empty message")
	case !utf8.Valid(value):
		return nil, refuse("bad_json", "message is not UTF-8")
	case trimmed[0] != '{':
		return nil, refuse("bad_json", "message is not a JSON object")
	}
	if err := exactFieldNames(trimmed); err != nil {
		return nil, err
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, refuse("bad_json", "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, refuse("bad_json", "trailing data after the JSON object")
	}
	return &w, nil
}

// exactFieldNames refuses a top-level field that is not exactly one of the documented names, and
// one named twice: encoding/json would keep the last, and two readers could disagree about the job.
func exactFieldNames(b []byte) error {
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
		if !known(k) {
			return refuse("bad_json", "unknown field %q (fields: %s; or %s)", k,
				strings.Join(currentFields, ", "), strings.Join(legacyFields, ", "))
		}
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

func known(name string) bool {
	for _, f := range currentFields {
		if f == name {
			return true
		}
	}
	for _, f := range legacyFields {
		if f == name {
			return true
		}
	}
	return false
}

func (w *wire) current() bool {
	return w.ID != nil || w.RemotePath != nil || w.MD5 != nil || w.Size != nil || w.DestKey != nil || w.Source != nil
}

func (w *wire) legacy() bool { return w.Name != nil || w.Location != nil || w.Hash != nil }

// oneFormat refuses a message mixing the two formats.
func oneFormat(w *wire, _ *Job) error {
	if w.current() && w.legacy() {
		return refuse("mixed_format", "fields of the current format (%s) mixed with the legacy one (%s)",
			strings.Join(currentFields, ", "), strings.Join(legacyFields, ", "))
	}
	return nil
}

// remotePath takes remote_path, or location + name in the legacy format.
func remotePath(w *wire, j *Job) error {
	if w.legacy() {
		if w.Name == nil || w.Location == nil {
			return refuse("missing_field", "legacy format needs name and location")
		}
		name, loc := *w.Name, *w.Location
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return refuse("bad_path", "name %q must be one path segment", name)
		}
		if err := checkPath(loc, true); err != nil {
			return err
		}
		j.RemotePath = strings.TrimSuffix(loc, "/") + "/" + name
	} else {
		if w.RemotePath == nil {
			return refuse("missing_field", "remote_path is required")
		}
		j.RemotePath = *w.RemotePath
	}
	if err := checkPath(j.RemotePath, false); err != nil {
		return err
	}
	if w.DestKey == nil && len(j.RemotePath)-1 > MaxKeyBytes {
		return refuse("bad_path", "path is %d bytes: as an S3 key it would exceed %d bytes (give a dest_key)", len(j.RemotePath), MaxKeyBytes)
	}
	return nil
}

// size takes the announced size, a whole number of bytes; -1 when absent.
func size(w *wire, j *Job) error {
	j.Size = -1
	if w.Size == nil {
		return nil
	}
	var n int64
	if err := json.Unmarshal(*w.Size, &n); err != nil {
		return refuse("bad_size", "size %s is not a whole number of bytes", string(*w.Size))
	}
	if n < 0 {
		return refuse("bad_size", "size %d is negative", n)
	}
	j.Size = n
	return nil
}

func destKey(w *wire, j *Job) error {
	if w.DestKey == nil {
		return nil
	}
	if err := checkKey(*w.DestKey); err != nil {
		return err
	}
	j.DestKey = *w.DestKey
	return nil
}

// md5Field takes md5 (or the legacy hash): 32 hex digits, optionally prefixed "md5:".
func md5Field(w *wire, j *Job) error {
	h := w.MD5
	if w.legacy() {
		h = w.Hash
	}
	if h == nil {
		return nil
	}
	sum, err := parseMD5(*h)
	j.MD5 = sum
	return err
}

// source takes the source the message names, "default" when none, and its key prefix.
func (p Policy) source(w *wire, j *Job) error {
	name := DefaultSource
	if w.Source != nil {
		name = *w.Source
	}
	if !sourceName.MatchString(name) {
		return refuse("bad_source", "source %q: lower-case letters, digits and -, at most 63", name)
	}
	if name != DefaultSource {
		j.Source = name
	}
	if p.Sources == nil {
		return nil
	}
	sp, ok := p.Sources[name]
	if !ok {
		return refuse("unknown_source", "source %q is not configured (sources: %s)", name, strings.Join(sortedKeys(p.Sources), ", "))
	}
	j.KeyPrefix = sp.KeyPrefix
	if len(j.Key()) > MaxKeyBytes {
		return refuse("bad_dest_key", "S3 key %q is %d bytes with the source's key prefix, limit %d", j.Key(), len(j.Key()), MaxKeyBytes)
	}
	return nil
}

var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func sortedKeys(m map[string]SourcePolicy) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pathAllowed keeps a job inside the directories its source allows.
func (p Policy) pathAllowed(_ *wire, j *Job) error {
	allowed := p.Sources[j.SourceName()].AllowedPaths
	if len(allowed) == 0 {
		return nil
	}
	for _, dir := range allowed {
		if dir == "/" || j.RemotePath == dir || strings.HasPrefix(j.RemotePath, strings.TrimSuffix(dir, "/")+"/") {
			return nil
		}
	}
	setting := "sftp.allowed_paths"
	if j.Source != "" {
		setting = "sources." + j.Source + ".allowed_paths"
	}
	return refuse("path_not_allowed", "remote_path %q is outside %s (%s)", j.RemotePath, setting, strings.Join(allowed, ", "))
}

// keyAllowed keeps a job's object under the key prefixes the deployment allows.
func (p Policy) keyAllowed(_ *wire, j *Job) error {
	if len(p.AllowedKeyPrefixes) == 0 {
		return nil
	}
	for _, prefix := range p.AllowedKeyPrefixes {
		if strings.HasPrefix(j.Key(), prefix) {
			return nil
		}
	}
	return refuse("key_not_allowed", "S3 key %q is outside s3.allowed_key_prefixes (%s)", j.Key(), strings.Join(p.AllowedKeyPrefixes, ", "))
}

// jobID takes the id field, else the message key, else derives one from path and checksum.
func jobID(key []byte, w *wire, j *Job) error {
	switch {
	case w.ID != nil:
		j.ID = *w.ID
	case len(key) > 0:
		j.ID = string(key)
	default:
		name := j.RemotePath + "\x00" + j.MD5
		if j.Source != "" {
			name = j.Source + "\x00" + name // the same path on two sources is two jobs
		}
		sum := sha256.Sum256([]byte(name))
		j.ID = "p-" + hex.EncodeToString(sum[:])[:24]
		return nil
	}
	return checkID(j.ID)
}
