package httpserver_test

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kafkasync/kafkasync/internal/httpserver"
)

func TestNewSetsEveryTimeout(t *testing.T) {
	s := httpserver.New("127.0.0.1:0", http.NotFoundHandler())
	for name, got := range map[string]int64{
		"ReadHeaderTimeout": int64(s.ReadHeaderTimeout), "ReadTimeout": int64(s.ReadTimeout),
		"WriteTimeout": int64(s.WriteTimeout), "IdleTimeout": int64(s.IdleTimeout), "MaxHeaderBytes": int64(s.MaxHeaderBytes),
	} {
		if got <= 0 {
			t.Errorf("%s is not set: a slow or idle client could hold a connection forever", name)
		}
	}
	if s.Addr != "127.0.0.1:0" || s.Handler == nil {
		t.Fatalf("server %+v", s)
	}
}

// TestEveryServerIsBuiltHere keeps every HTTP server of the product on New: a server made anywhere
// else would come without the timeouts.
func TestEveryServerIsBuiltHere(t *testing.T) {
	root := moduleRoot(t)
	own := filepath.Join(root, "internal", "httpserver")
	bare := regexp.MustCompile(`http\.Server\{|http\.ListenAndServe(TLS)?\(|http\.Serve(TLS)?\(`)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (p == own || d.Name() == ".git" || d.Name() == "bin" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if loc := bare.FindIndex(b); loc != nil {
			rel, _ := filepath.Rel(root, p)
			t.Errorf("%s: %q builds an HTTP server without httpserver.New", rel, b[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}
