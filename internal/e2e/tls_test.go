package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testpki"
	"github.com/kafkasync/kafkasync/workers"
)

// temporalFront puts the Temporal dev server (plain gRPC at backend) behind TLS that requires a
// client certificate from p's CA and an API key (Authorization: Bearer), as a Temporal Cloud
// namespace endpoint does. It returns the front's address, the count of calls let through and a
// function returning the handshake errors the front has logged.
func temporalFront(t *testing.T, p *testpki.PKI, backend, apiKey string) (string, *atomic.Int64, func() string) {
	t.Helper()
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true) // the dev server speaks gRPC without TLS
	target := &url.URL{Scheme: "http", Host: backend}
	proxy := &httputil.ReverseProxy{Transport: h2c, Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) },
		ErrorLog: stdlog.New(io.Discard, "", 0)} // long polls cancelled when the test ends
	var passed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+apiKey {
			// A trailers-only gRPC answer: status 16, UNAUTHENTICATED.
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16")
			w.Header().Set("Grpc-Message", "missing or wrong API key")
			w.WriteHeader(http.StatusOK)
			return
		}
		passed.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	var mu sync.Mutex
	var refused strings.Builder
	srv.Config.ErrorLog = stdlog.New(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return refused.Write(b)
	}), "", 0)
	srv.TLS = p.ServerConfig(true)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), &passed, func() string { mu.Lock(); defer mu.Unlock(); return refused.String() }
}

// logs reports whether log() comes to contain want within five seconds.
func logs(log func() string, want string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(log(), want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// tlsProxy terminates TLS (server side of cfg) in front of the plain TCP service at backend.
func tlsProxy(t *testing.T, cfg *tls.Config, backend string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestEverythingOverTLS runs a job with Temporal behind mutual TLS and an API key, S3 behind TLS
// signed by a private CA, and PostgreSQL with TLS verified against that CA; each refuses a client
// that lacks what it asks for.
func TestEverythingOverTLS(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	pki := testpki.New(t, "kafkasync private CA")
	other := testpki.New(t, "someone else's CA")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := env.Logger(t)

	const apiKey = "tk-0123456789abcdef"
	front, passed, refusedLog := temporalFront(t, pki, env.Cfg.Temporal.Address, apiKey)
	s3u, err := url.Parse(env.Stack.S3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	s3front := tlsProxy(t, pki.ServerConfig(false), s3u.Host)
	pg, err := devstack.StartPostgresTLS(ctx, filepath.Join(env.Dir, "pg-tls"), 0, io.Discard,
		devstack.PostgresTLS{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)

	cfg := env.Cfg
	cfg.Temporal.Address = front
	cfg.Temporal.TLS = config.TLS{Enable: true, CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}
	cfg.Temporal.APIKey = apiKey
	cfg.S3.Endpoint, cfg.S3.CAFile = "https://"+s3front, pki.CAFile
	pgDSN := func(ca string) string {
		return strings.Replace(pg.DSN, "sslmode=disable", "sslmode=verify-full&sslrootcert="+ca, 1)
	}
	cfg.Postgres.DSN = config.Secret(pgDSN(pki.CAFile))

	t.Run("refusals", func(t *testing.T) {
		bad := cfg.Temporal
		bad.APIKey = "tk-wrong"
		if c, err := workers.Dial(ctx, bad, log); err == nil {
			c.Close()
			t.Error("Temporal: a wrong API key was let through")
		} else if !strings.Contains(err.Error(), "Unauthenticated") {
			t.Errorf("Temporal, wrong API key: %v", err)
		}
		bad = cfg.Temporal
		bad.TLS.CertFile, bad.TLS.KeyFile = "", ""
		if c, err := workers.Dial(ctx, bad, log); err == nil {
			c.Close()
			t.Error("Temporal: connected without a client certificate")
		} else if !strings.Contains(err.Error(), "certificate required") && !logs(refusedLog, "didn't provide a certificate") {
			// With TLS 1.3 the server checks the client's certificate after the client has finished
			// its handshake: the client sees the server's alert or only a reset or a broken pipe, and
			// the front may log why a moment after the client has given up.
			t.Errorf("Temporal, no client certificate: %v; the front logged %q", err, refusedLog())
		}
		bad = cfg.Temporal
		bad.TLS.CAFile = other.CAFile
		if c, err := workers.Dial(ctx, bad, log); err == nil {
			c.Close()
			t.Error("Temporal: trusted a server certificate from a foreign CA")
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Temporal, foreign CA: %v", err)
		}

		s3bad := cfg.S3
		s3bad.CAFile = other.CAFile
		cl, err := s3client.New(s3bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.S3.Bucket)}); err == nil {
			t.Error("S3: trusted a server certificate from a foreign CA")
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("S3, foreign CA: %v", err)
		}
		s3bad.CAFile = ""
		if cl, _ = s3client.New(s3bad); cl != nil {
			if _, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.S3.Bucket)}); err == nil {
				t.Error("S3: the system's roots vouched for a private CA's certificate")
			} else if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("S3, system roots: %v", err)
			}
		}

		st, err := audit.Open(ctx, pgDSN(other.CAFile))
		if err == nil {
			err = st.Ping(ctx)
			st.Close()
		}
		if err == nil {
			t.Error("PostgreSQL: trusted a server certificate from a foreign CA")
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("PostgreSQL, foreign CA: %v", err)
		}
	})

	env.Cfg = cfg
	p := startPipeline(t, env, true)
	sum := env.WriteFile(t, "tls/over-tls.bin", 3<<20+17, 99)
	p.publish(t, "over-tls", fmt.Sprintf(`{"id":"over-tls","remote_path":"/tls/over-tls.bin","md5":%q}`, sum))
	res, err := p.wait(ctx, "over-tls")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s3client.New(cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	h, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(res.Bucket), Key: aws.String(res.Key)})
	if err != nil || aws.ToInt64(h.ContentLength) != 3<<20+17 {
		t.Fatalf("object over TLS: %v", err)
	}
	j, err := p.store.Job(ctx, "over-tls")
	if err != nil || j.Status != audit.StatusSucceeded {
		t.Fatalf("audit row over TLS: %+v %v", j, err)
	}
	var ssl int
	if err := p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE s.ssl AND a.datname = 'kafkasync'`).Scan(&ssl); err != nil || ssl == 0 {
		t.Fatalf("PostgreSQL sessions over TLS: %d (%v)", ssl, err)
	}
	var plain int
	_ = p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE NOT s.ssl AND a.datname = 'kafkasync' AND a.backend_type = 'client backend'`).Scan(&plain)
	t.Logf("archived %s (%d bytes) with Temporal behind mutual TLS + API key (%d calls let through), S3 over TLS from a private CA, "+
		"and %d PostgreSQL sessions over TLS (%d in clear)", res.Key, res.Size, passed.Load(), ssl, plain)
	if plain != 0 {
		t.Fatalf("%d PostgreSQL sessions in clear", plain)
	}
}
