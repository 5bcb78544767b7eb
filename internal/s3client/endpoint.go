package s3client

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// endpointMemo resolves each bucket's endpoint once. The SDK runs the S3 endpoint rules twice for
// every request (once for its URL, once for its signing scheme), and on a request's fresh
// goroutine their large frames grow its stack: for a small file's PUT that cost more than the
// signature. The answer depends on the client's options and the bucket only, as the rules read
// neither the key, the prefix nor the copy source, so one answer serves every request that
// differs only in those.
type endpointMemo struct {
	next s3.EndpointResolverV2
	mu   sync.Mutex
	seen map[string]smithyendpoints.Endpoint
}

// memoLimit bounds the memo: past it, endpoints are resolved every time.
const memoLimit = 1024

func newEndpointMemo() *endpointMemo {
	return &endpointMemo{next: s3.NewDefaultEndpointResolverV2(), seen: map[string]smithyendpoints.Endpoint{}}
}

func (m *endpointMemo) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	key := paramsKey(p)
	m.mu.Lock()
	e, ok := m.seen[key]
	m.mu.Unlock()
	if !ok {
		var err error
		if e, err = m.next.ResolveEndpoint(ctx, p); err != nil {
			return e, err
		}
		m.mu.Lock()
		if len(m.seen) < memoLimit {
			m.seen[key] = e
		}
		m.mu.Unlock()
	}
	return cloneEndpoint(e), nil
}

// paramsKey names the parameters the rules read: all but the key, prefix and copy source (which
// the rules of this SDK version never read; a new version's evalCondition needs the same check).
func paramsKey(p s3.EndpointParameters) string {
	p.Key, p.Prefix, p.CopySource = nil, nil, nil
	v := reflect.ValueOf(p)
	var b strings.Builder
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				b.WriteString("0,")
				continue
			}
			f = f.Elem()
		}
		b.WriteString("1" + strconv.Quote(fmt.Sprint(f.Interface())) + ",")
	}
	return b.String()
}

// cloneEndpoint copies what a request may change: the SDK rewrites the auth options it finds in an
// endpoint's properties in place, and each request must get its own.
func cloneEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	c := smithyendpoints.Endpoint{URI: e.URI, Headers: e.Headers.Clone()}
	c.Properties.SetAll(&e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		own := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			own[i] = &smithyauth.Option{SchemeID: o.SchemeID}
			own[i].IdentityProperties.SetAll(&o.IdentityProperties)
			own[i].SignerProperties.SetAll(&o.SignerProperties)
		}
		smithyauth.SetAuthOptions(&c.Properties, own)
	}
	return c
}
