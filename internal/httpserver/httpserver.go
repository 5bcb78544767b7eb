// Package httpserver builds every HTTP server kafkasync runs (the dashboard, the worker's and the
// bridge's metrics ports) with bounded timeouts and header size, so a client that sends slowly,
// stalls or keeps idle connections open cannot hold a connection and its memory for long.
package httpserver

import (
	"net/http"
	"time"
)

// The bounds every server gets. Requests are small (forms, job messages up to 1 MiB) and answers
// are pages, JSON and metrics, so none of them needs longer.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = time.Minute
	IdleTimeout       = time.Minute
	MaxHeaderBytes    = 64 << 10
)

// New returns a server for h on addr (empty: for Serve on a listener) with those bounds.
func New(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
