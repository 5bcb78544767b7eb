package job

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	const sum = "9e107d9d372bb6826bd81d3542a419d6"
	for _, tc := range []struct {
		name  string
		key   string
		value string
		want  Job
	}{
		{"current, all fields", "", `{"id":"j1","remote_path":"/uploads/a.bin","md5":"` + sum + `","size":123,"dest_key":"x/y.bin"}`,
			Job{ID: "j1", RemotePath: "/uploads/a.bin", MD5: sum, Size: 123, DestKey: "x/y.bin"}},
		{"id from key", "k-7", `{"remote_path":"/a.bin","md5":"` + strings.ToUpper(sum) + `"}`,
			Job{ID: "k-7", RemotePath: "/a.bin", MD5: sum, Size: -1}},
		{"md5: prefix", "k", `{"remote_path":"/a","md5":"md5:` + sum + `","size":0}`,
			Job{ID: "k", RemotePath: "/a", MD5: sum, Size: 0}},
		{"no hash", "k", `{"remote_path":"/a"}`, Job{ID: "k", RemotePath: "/a", Size: -1}},
		{"legacy", "", `{"name":"a.bin","location":"/uploads","hash":"` + sum + `"}`,
			Job{ID: "p-", RemotePath: "/uploads/a.bin", MD5: sum, Size: -1}},
		{"legacy at root", "id.1", `{"name":"a.bin","location":"/","hash":"md5:` + sum + `"}`,
			Job{ID: "id.1", RemotePath: "/a.bin", MD5: sum, Size: -1}},
		{"whitespace around", "k", " \n{\"remote_path\":\"/a b/ü.txt\"}\n", Job{ID: "k", RemotePath: "/a b/ü.txt", Size: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var key []byte
			if tc.key != "" {
				key = []byte(tc.key)
			}
			got, err := Parse(key, []byte(tc.value))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.want.ID == "p-" {
				if !strings.HasPrefix(got.ID, "p-") || len(got.ID) != 26 {
					t.Fatalf("derived id %q", got.ID)
				}
				again, _ := Parse(nil, []byte(tc.value))
				if again.ID != got.ID {
					t.Fatalf("derived id not stable: %q vs %q", got.ID, again.ID)
				}
				tc.want.ID = got.ID
			}
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	const sum = "9e107d9d372bb6826bd81d3542a419d6"
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name, key, value, reason string
	}{
		{"empty", "", "", "bad_json"},
		{"not json", "", "hello", "bad_json"},
		{"null", "", "null", "bad_json"},
		{"array", "", `[{"remote_path":"/a"}]`, "bad_json"},
		{"trailing", "", `{"remote_path":"/a"} {}`, "bad_json"},
		{"unknown field", "", `{"remote_path":"/a","evil":1}`, "bad_json"},
		{"duplicate field", "", `{"remote_path":"/a","remote_path":"/etc/passwd"}`, "bad_json"},
		{"path too long for an S3 key", "", `{"remote_path":"/` + strings.Repeat("a/", 600) + `b"}`, "bad_path"},
		{"right-to-left override", "", "{\"remote_path\":\"/in/invoice\u202Efdp.exe\"}", "bad_path"},
		{"zero-width space", "", "{\"remote_path\":\"/in/a\u200Bb\"}", "bad_path"},
		{"byte-order mark", "", "{\"remote_path\":\"/in/\uFEFFa\"}", "bad_path"},
		{"C1 control", "", "{\"remote_path\":\"/in/a\u0085b\"}", "bad_path"},
		{"line separator", "", "{\"remote_path\":\"/in/a\u2028b\"}", "bad_path"},
		{"too large", "", `{"remote_path":"/` + strings.Repeat("a", MaxMessageBytes) + `"}`, "too_large"},
		{"missing path", "", `{"md5":"` + sum + `"}`, "missing_field"},
		{"mixed", "", `{"remote_path":"/a","name":"b"}`, "mixed_format"},
		{"legacy without location", "", `{"name":"a","hash":"` + sum + `"}`, "missing_field"},
		{"legacy name with slash", "", `{"name":"../x","location":"/u"}`, "bad_path"},
		{"legacy name dotdot", "", `{"name":"..","location":"/u"}`, "bad_path"},
		{"legacy relative location", "", `{"name":"a","location":"u"}`, "bad_path"},
		{"relative traversal", "", `{"remote_path":"../../etc/passwd"}`, "bad_path"},
		{"absolute traversal", "", `{"remote_path":"/a/../../etc/passwd"}`, "bad_path"},
		{"inner traversal", "", `{"remote_path":"/uploads/../etc/passwd"}`, "bad_path"},
		{"relative", "", `{"remote_path":"relative/path"}`, "bad_path"},
		{"double slash", "", `{"remote_path":"/a//b"}`, "bad_path"},
		{"trailing slash", "", `{"remote_path":"/a/b/"}`, "bad_path"},
		{"dot segment", "", `{"remote_path":"/a/./b"}`, "bad_path"},
		{"nul", "", `{"remote_path":"/a\u0000b"}`, "bad_path"},
		{"newline", "", `{"remote_path":"/a\nb"}`, "bad_path"},
		{"root", "", `{"remote_path":"/"}`, "bad_path"},
		{"empty path", "", `{"remote_path":""}`, "bad_path"},
		{"long segment", "", `{"remote_path":"/` + long + `"}`, "bad_path"},
		{"long path", "", `{"remote_path":"` + strings.Repeat("/abcdefgh", 600) + `"}`, "bad_path"},
		{"sha1 hash", "", `{"remote_path":"/a","md5":"sha1:2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"}`, "bad_md5"},
		{"sha256 legacy", "", `{"name":"a","location":"/u","hash":"sha256:abcd"}`, "bad_md5"},
		{"short md5", "", `{"remote_path":"/a","md5":"abc"}`, "bad_md5"},
		{"non-hex md5", "", `{"remote_path":"/a","md5":"zz107d9d372bb6826bd81d3542a419d6"}`, "bad_md5"},
		{"empty md5", "", `{"remote_path":"/a","md5":""}`, "bad_md5"},
		{"negative size", "", `{"remote_path":"/a","size":-1}`, "bad_size"},
		{"fractional size", "", `{"remote_path":"/a","size":1.5}`, "bad_size"},
		{"string size", "", `{"remote_path":"/a","size":"12"}`, "bad_size"},
		{"bad id chars", "", `{"id":"a/b","remote_path":"/a"}`, "bad_id"},
		{"id dotdot", "", `{"id":"..","remote_path":"/a"}`, "bad_id"},
		{"id leading dash", "", `{"id":"-rf","remote_path":"/a"}`, "bad_id"},
		{"empty id", "", `{"id":"","remote_path":"/a"}`, "bad_id"},
		{"long id", "", `{"id":"` + long + `","remote_path":"/a"}`, "bad_id"},
		{"bad key id", "../x", `{"remote_path":"/a"}`, "bad_id"},
		{"dest key absolute", "", `{"remote_path":"/a","dest_key":"/etc/passwd"}`, "bad_dest_key"},
		{"dest key traversal", "", `{"remote_path":"/a","dest_key":"a/../../b"}`, "bad_dest_key"},
		{"dest key dotdot", "", `{"remote_path":"/a","dest_key":".."}`, "bad_dest_key"},
		{"dest key empty", "", `{"remote_path":"/a","dest_key":""}`, "bad_dest_key"},
		{"dest key trailing slash", "", `{"remote_path":"/a","dest_key":"a/"}`, "bad_dest_key"},
		{"dest key control", "", `{"remote_path":"/a","dest_key":"a\tb"}`, "bad_dest_key"},
		// encoding/json alone matches names in any case and folds look-alike letters.
		{"field name in upper case", "", `{"remote_path":"/in/a","REMOTE_PATH":"/etc/shadow"}`, "bad_json"},
		{"field name in mixed case only", "", `{"Remote_Path":"/etc/shadow"}`, "bad_json"},
		{"long s for s", "", "{\"remote_path\":\"/in/a\",\"\u017Fize\":5}", "bad_json"},
		{"Kelvin sign for k", "", "{\"remote_path\":\"/in/a\",\"dest_\u212Aey\":\"etc/shadow\"}", "bad_json"},
		{"legacy name in upper case", "", `{"NAME":"shadow","location":"/etc"}`, "bad_json"},
		{"Hangul filler", "", "{\"remote_path\":\"/in/\u3164.pdf\"}", "bad_path"},
		{"halfwidth Hangul filler", "", "{\"remote_path\":\"/in/a\uFFA0b\"}", "bad_path"},
		{"non-character U+FFFE", "", "{\"remote_path\":\"/in/a\uFFFEb\"}", "bad_path"},
		{"non-character U+FDD0", "", "{\"remote_path\":\"/in/a\uFDD0b\"}", "bad_path"},
		{"combining grapheme joiner", "", "{\"remote_path\":\"/in/a\u034Fb\"}", "bad_path"},
		{"no-break space", "", "{\"remote_path\":\"/in/a\u00A0b\"}", "bad_path"},
		{"ideographic space", "", "{\"remote_path\":\"/in/a\u3000b\"}", "bad_path"},
		{"variation selector", "", "{\"remote_path\":\"/in/a\uFE0Fb\"}", "bad_path"},
		{"private use", "", "{\"remote_path\":\"/in/a\uE000b\"}", "bad_path"},
		{"tag character", "", "{\"remote_path\":\"/in/a\U000E0041b\"}", "bad_path"},
		{"dest key Hangul filler", "", "{\"remote_path\":\"/a\",\"dest_key\":\"x/\u3164\"}", "bad_dest_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var key []byte
			if tc.key != "" {
				key = []byte(tc.key)
			}
			j, err := Parse(key, []byte(tc.value))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse accepted %+v (err %v), want refusal %s", j, err, tc.reason)
			}
			if ve.Reason != tc.reason {
				t.Fatalf("reason %q (%v), want %q", ve.Reason, err, tc.reason)
			}
		})
	}
}

func TestKeyAndWorkflowID(t *testing.T) {
	j := Job{ID: "x", RemotePath: "/in/a.bin"}
	if j.Key() != "in/a.bin" || j.WorkflowID() != "file-x" {
		t.Fatalf("Key %q WorkflowID %q", j.Key(), j.WorkflowID())
	}
	j.DestKey = "out/b.bin"
	if j.Key() != "out/b.bin" {
		t.Fatalf("Key with dest_key %q", j.Key())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"remote_path":"/a"}`, `{"name":"a","location":"/u","hash":"md5:9e107d9d372bb6826bd81d3542a419d6"}`,
		`{"id":"x","remote_path":"/a/b","dest_key":"c/d","size":3}`, `{"remote_path":"/a/../b"}`} {
		f.Add([]byte("k"), []byte(s))
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		j, err := Parse(key, value)
		if err != nil {
			return
		}
		if checkPath(j.RemotePath, false) != nil || checkKey(j.Key()) != nil || checkID(j.ID) != nil {
			t.Fatalf("accepted job does not re-validate: %+v", j)
		}
		for _, seg := range strings.Split(j.Key(), "/") {
			if seg == ".." || seg == "" {
				t.Fatalf("key %q escapes", j.Key())
			}
		}
	})
}

func TestPolicyRefusesOutsideAllowed(t *testing.T) {
	p := Policy{Sources: map[string]SourcePolicy{
		"default":   {AllowedPaths: []string{"/uploads", "/partner/out/"}},
		"partner-b": {AllowedPaths: []string{"/outbox"}, KeyPrefix: "archive/b/"},
	}, AllowedKeyPrefixes: []string{"invoices/", "archive/"}}
	for _, tc := range []struct {
		name, value, reason string
	}{
		{"allowed", `{"remote_path":"/uploads/a.pdf","dest_key":"invoices/a.pdf"}`, ""},
		{"allowed, second dir, key from a prefix", `{"remote_path":"/partner/out/x/b.pdf","dest_key":"archive/b.pdf"}`, ""},
		{"path outside", `{"remote_path":"/etc/shadow","dest_key":"invoices/s"}`, "path_not_allowed"},
		{"sibling with the same prefix", `{"remote_path":"/uploads-private/a","dest_key":"invoices/a"}`, "path_not_allowed"},
		{"key outside", `{"remote_path":"/uploads/a.pdf","dest_key":"other/a.pdf"}`, "key_not_allowed"},
		{"derived key outside", `{"remote_path":"/uploads/a.pdf"}`, "key_not_allowed"},
		{"legacy path outside", `{"name":"shadow","location":"/etc"}`, "path_not_allowed"},
		{"named source, its own path, its key prefix", `{"remote_path":"/outbox/a.pdf","source":"partner-b"}`, ""},
		{"named source, the default's path", `{"remote_path":"/uploads/a.pdf","source":"partner-b"}`, "path_not_allowed"},
		{"unknown source", `{"remote_path":"/uploads/a.pdf","source":"partner-c"}`, "unknown_source"},
		{"source in upper case", `{"remote_path":"/uploads/a.pdf","source":"Partner-B"}`, "bad_source"},
		{"source field in upper case", `{"remote_path":"/uploads/a.pdf","Source":"partner-b"}`, "bad_json"},
		{"source with the legacy format", `{"name":"a","location":"/uploads","source":"default"}`, "mixed_format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Parse([]byte("k"), []byte(tc.value))
			var ve *ValidationError
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason != "" && (!errors.As(err, &ve) || ve.Reason != tc.reason):
				t.Fatalf("err %v, want reason %s", err, tc.reason)
			}
		})
	}
	if _, err := Parse([]byte("k"), []byte(`{"remote_path":"/etc/hosts"}`)); err != nil {
		t.Fatalf("the zero Policy allows every path: %v", err)
	}
	j, err := p.Parse(nil, []byte(`{"remote_path":"/outbox/a.pdf","dest_key":"x.pdf","source":"partner-b"}`))
	if err != nil || j.Key() != "archive/b/x.pdf" || j.SourceName() != "partner-b" {
		t.Fatalf("key %q source %q: %v", j.Key(), j.Source, err)
	}
	same, _ := Parse(nil, []byte(`{"remote_path":"/outbox/a.pdf"}`))
	if other, _ := Parse(nil, []byte(`{"remote_path":"/outbox/a.pdf","source":"partner-b"}`)); other.ID == same.ID {
		t.Fatalf("the same path on two sources got one derived ID %s", same.ID)
	}
}
