package s3client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"

	"github.com/kafkasync/kafkasync/internal/config"
)

// The memo answers as the SDK's rules do, for any key, on S3-compatible servers and on AWS.
func TestEndpointMemoAnswersAsTheRules(t *testing.T) {
	rules := s3.NewDefaultEndpointResolverV2()
	memo := newEndpointMemo()
	ctx := context.Background()
	for _, base := range []s3.EndpointParameters{
		{Bucket: aws.String("archive"), Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:7070"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("archive"), Region: aws.String("eu-west-1"), Endpoint: aws.String("https://s3.example.com"), ForcePathStyle: aws.Bool(false)},
		{Bucket: aws.String("archive"), Region: aws.String("eu-west-1")},
		{Bucket: aws.String("other"), Region: aws.String("us-west-2"), UseFIPS: aws.Bool(true)},
	} {
		for _, key := range []string{"a.bin", "in/batch 01/ü #1.bin", ""} {
			p := base
			if key != "" {
				p.Key = aws.String(key)
			}
			want, err := rules.ResolveEndpoint(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // resolved, then remembered
				got, err := memo.ResolveEndpoint(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if g, w := describe(got), describe(want); g != w {
					t.Fatalf("%s key %q:\n got %s\nwant %s", aws.ToString(p.Endpoint), key, g, w)
				}
			}
		}
	}
	if n := len(memo.seen); n != 4 {
		t.Fatalf("%d endpoints remembered, want one per bucket and options (4)", n)
	}
	for _, pair := range [][2]s3.EndpointParameters{{{}, {Bucket: aws.String("")}}, {{Bucket: aws.String("a,1b")}, {Bucket: aws.String("a"), Region: aws.String("b")}}} {
		if paramsKey(pair[0]) == paramsKey(pair[1]) {
			t.Fatalf("%+v and %+v share a memo entry", pair[0], pair[1])
		}
	}
}

// Each request gets its own auth options: the SDK rewrites them in place.
func TestEndpointMemoGivesEachRequestItsOwn(t *testing.T) {
	memo := newEndpointMemo()
	p := s3.EndpointParameters{Bucket: aws.String("archive"), Region: aws.String("us-east-1"),
		Endpoint: aws.String("http://127.0.0.1:7070"), ForcePathStyle: aws.Bool(true)}
	first, _ := memo.ResolveEndpoint(context.Background(), p)
	opts, ok := smithyauth.GetAuthOptions(&first.Properties)
	if !ok || len(opts) == 0 {
		t.Fatal("no auth options")
	}
	opts[0].SchemeID = "changed"
	opts[0].SignerProperties.Set("changed", true)
	first.Headers.Set("X-Changed", "1")
	second, _ := memo.ResolveEndpoint(context.Background(), p)
	if d := describe(second); strings.Contains(d, "changed") || strings.Contains(d, "X-Changed") {
		t.Fatalf("one request's changes reached the next: %s", d)
	}

	// Requests at once through a client: go test -race finds any sharing the SDK writes to.
	var mu sync.Mutex
	paths := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path] = true
		mu.Unlock()
		w.Header().Set("ETag", `"x"`)
	}))
	defer srv.Close()
	c, err := New(config.S3{Endpoint: srv.URL, Region: "us-east-1", PathStyle: true, AccessKey: "a", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			key := []string{"a.bin", "b c.bin"}[i%2]
			if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("archive"), Key: aws.String(key),
				Body: strings.NewReader("x")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if !paths["/archive/a.bin"] || !paths["/archive/b c.bin"] || len(paths) != 2 {
		t.Fatalf("paths %v", paths)
	}
}

// describe prints what a request takes from an endpoint, in a stable order.
func describe(e smithyendpoints.Endpoint) string {
	parts := []string{e.URI.String()}
	for k, v := range e.Headers {
		parts = append(parts, k+"="+strings.Join(v, ","))
	}
	opts, _ := smithyauth.GetAuthOptions(&e.Properties)
	for _, o := range opts {
		parts = append(parts, "scheme "+o.SchemeID)
		for k, v := range o.SignerProperties.Values() {
			parts = append(parts, fmt.Sprintf("%s %T=%v", o.SchemeID, k, v))
		}
	}
	slices.Sort(parts[1:])
	return strings.Join(parts, " ")
}
