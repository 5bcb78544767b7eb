package job

import (
	"encoding/hex"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkPath accepts an absolute, clean path without "..", control or invisible characters, or
// over-long parts. dir allows "/" itself.
func checkPath(p string, dir bool) error {
	switch {
	case p == "":
		return refuse("bad_path", "path is empty")
	case len(p) > MaxPathBytes:
		return refuse("bad_path", "path is %d bytes, limit %d", len(p), MaxPathBytes)
	case !utf8.ValidString(p):
		return refuse("bad_path", "path is not UTF-8")
	case !strings.HasPrefix(p, "/"):
		return refuse("bad_path", "path %q is not absolute", p)
	case p == "/" && !dir:
		return refuse("bad_path", "path / is not a file")
	case path.Clean(p) != p:
		return refuse("bad_path", "path %q is not normalised (want %q)", p, path.Clean(p))
	}
	if r, ok := hidden(p); ok {
		return refuse("bad_path", "path %q holds %U, a control or invisible character", p, r)
	}
	return checkSegments(p[1:], "bad_path", "path")
}

// checkKey accepts a relative, clean S3 key that cannot climb out of its folder.
func checkKey(k string) error {
	switch {
	case k == "":
		return refuse("bad_dest_key", "dest_key is empty")
	case len(k) > MaxKeyBytes:
		return refuse("bad_dest_key", "dest_key is %d bytes, limit %d", len(k), MaxKeyBytes)
	case !utf8.ValidString(k):
		return refuse("bad_dest_key", "dest_key is not UTF-8")
	case strings.HasPrefix(k, "/"):
		return refuse("bad_dest_key", "dest_key %q must not start with /", k)
	case path.Clean(k) != k || k == ".":
		return refuse("bad_dest_key", "dest_key %q is not normalised", k)
	}
	if r, ok := hidden(k); ok {
		return refuse("bad_dest_key", "dest_key %q holds %U, a control or invisible character", k, r)
	}
	return checkSegments(k, "bad_dest_key", "dest_key")
}

func checkSegments(p, reason, what string) error {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return refuse(reason, "%s %q has a .. segment", what, p)
		}
		if len(seg) > MaxSegmentBytes {
			return refuse(reason, "%s segment of %d bytes, limit %d", what, len(seg), MaxSegmentBytes)
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
func parseMD5(s string) (string, error) {
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

// Hidden lists the classes of characters refused in paths and keys: each can hide or disguise
// what a name says on a screen.
var Hidden = []struct {
	Name  string
	Table *unicode.RangeTable
}{
	{"control characters (Cc)", unicode.Cc},
	{"format characters (Cf): bidirectional overrides, zero-width spaces and joiners, the byte-order mark", unicode.Cf},
	{"line separator (Zl)", unicode.Zl},
	{"paragraph separator (Zp)", unicode.Zp},
	{"spaces other than U+0020 (Zs): no-break, ideographic, en and em spaces", unicode.Zs},
	{"private-use characters (Co)", unicode.Co},
	{"non-characters (U+FDD0–U+FDEF, U+xFFFE, U+xFFFF)", unicode.Noncharacter_Code_Point},
	{"other default-ignorable characters: Hangul fillers (U+3164, U+115F, U+1160, U+FFA0), U+034F, tags", unicode.Other_Default_Ignorable_Code_Point},
	{"variation selectors", unicode.Variation_Selector},
}

// hidden returns the first character of s in a Hidden class (U+0020 is the one space allowed), or
// U+FFFD itself.
func hidden(s string) (rune, bool) {
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if r == utf8.RuneError {
			return r, true
		}
		for _, c := range Hidden {
			if unicode.Is(c.Table, r) {
				return r, true
			}
		}
	}
	return 0, false
}
