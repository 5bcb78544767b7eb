// Package sftpserver runs an SFTP server (golang.org/x/crypto/ssh with github.com/pkg/sftp) that
// serves one local folder as "/". The folder is opened with os.Root, so no request can reach a file
// outside it. It backs `kafkasync dev` and the tests; production talks to any SFTP server.
package sftpserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/time/rate"
)

// Options configures a Server.
type Options struct {
	// Listen is the TCP address, such as "127.0.0.1:2222" or "127.0.0.1:0" for a free port.
	Listen string
	// Root is the local folder served as "/".
	Root string
	// HostKey signs the server's side of the handshake.
	HostKey ssh.Signer
	// User is the only accepted login name.
	User string
	// Password, when not empty, is accepted for User.
	Password string
	// AuthorizedKey, when not nil, is accepted for User.
	AuthorizedKey ssh.PublicKey
	// ReadRate, when > 0, caps the bytes per second the whole server sends (to make transfers slow
	// enough to interrupt in tests).
	ReadRate int
	// Logger receives connection errors; nil discards them.
	Logger *slog.Logger
}

// Server is a running SFTP server. Close stops it and every open connection.
type Server struct {
	opts     Options
	root     *os.Root
	ln       net.Listener
	cfg      *ssh.ServerConfig
	limiter  *rate.Limiter
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	sent     atomic.Int64
	accepted atomic.Int64
	// sessions counts the SFTP sessions open now; peak the most open at once.
	sessions, peak atomic.Int64
	// reading counts the open read handles per file; peakFiles is the most distinct files open
	// for reading at once (a download opens its file once per connection).
	rmu       sync.Mutex
	reading   map[string]int
	peakFiles int
}

// Start listens and serves in the background until Close.
func Start(opts Options) (*Server, error) {
	if opts.HostKey == nil {
		return nil, errors.New("sftpserver: no host key")
	}
	if opts.Password == "" && opts.AuthorizedKey == nil {
		return nil, errors.New("sftpserver: neither password nor authorized key set")
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, root: root, conns: map[net.Conn]struct{}{}, reading: map[string]int{}}
	if opts.ReadRate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opts.ReadRate), 256<<10)
	}
	s.cfg = &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if opts.Password != "" && c.User() == opts.User && subtle.ConstantTimeCompare(pw, []byte(opts.Password)) == 1 {
				return nil, nil
			}
			return nil, errors.New("access denied")
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if opts.AuthorizedKey != nil && c.User() == opts.User &&
				subtle.ConstantTimeCompare(k.Marshal(), opts.AuthorizedKey.Marshal()) == 1 {
				return nil, nil
			}
			return nil, errors.New("access denied")
		},
	}
	s.cfg.AddHostKey(opts.HostKey)
	s.ln, err = net.Listen("tcp", opts.Listen)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("listen %s: %w", opts.Listen, err)
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// BytesSent returns how many file bytes the server has read out for clients since it started.
func (s *Server) BytesSent() int64 { return s.sent.Load() }

// Connections returns how many SSH connections the server has accepted since it started.
func (s *Server) Connections() int64 { return s.accepted.Load() }

// Sessions returns how many SFTP sessions are open now.
func (s *Server) Sessions() int64 { return s.sessions.Load() }

// PeakSessions returns the most SFTP sessions that were open at once since the start, or since
// the last ResetPeak.
func (s *Server) PeakSessions() int64 { return s.peak.Load() }

// PeakFilesRead returns the most distinct files that were open for reading at once since the
// start, or since the last ResetPeak: the downloads the server served at once.
func (s *Server) PeakFilesRead() int {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.peakFiles
}

// ResetPeak restarts PeakSessions and PeakFilesRead from what is open now.
func (s *Server) ResetPeak() {
	s.peak.Store(s.sessions.Load())
	s.rmu.Lock()
	s.peakFiles = len(s.reading)
	s.rmu.Unlock()
}

// DropConnections closes every open connection, as a server that goes away would; new ones are
// still accepted.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Close stops listening, drops every connection and waits for the handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.DropConnections()
	s.wg.Wait()
	s.root.Close()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		s.opts.Logger.Debug("ssh handshake", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ch.Close()
			for req := range creqs {
				ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
				if ok { // counted before the client learns the session is open
					n := s.sessions.Add(1)
					for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
					}
				}
				req.Reply(ok, nil)
				if !ok {
					continue
				}
				srv := sftp.NewRequestServer(ch, s.handlers())
				if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
					s.opts.Logger.Debug("sftp session", "err", err)
				}
				s.sessions.Add(-1)
				srv.Close()
				return
			}
		}()
	}
}

func (s *Server) handlers() sftp.Handlers {
	h := &rootHandler{s: s}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// rootHandler maps SFTP requests onto os.Root.
type rootHandler struct{ s *Server }

// rel turns an SFTP path into a path relative to the root ("." for "/").
func rel(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

func (h *rootHandler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	name := rel(r.Filepath)
	f, err := h.s.root.Open(name)
	if err != nil {
		return nil, err
	}
	h.s.rmu.Lock()
	h.s.reading[name]++
	h.s.peakFiles = max(h.s.peakFiles, len(h.s.reading))
	h.s.rmu.Unlock()
	return &countingReader{f: f, s: h.s, name: name}, nil
}

type countingReader struct {
	f    *os.File
	s    *Server
	name string
	once sync.Once
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.f.ReadAt(p, off)
	if n > 0 {
		if c.s.limiter != nil {
			if werr := c.s.limiter.WaitN(context.Background(), min(n, c.s.limiter.Burst())); werr != nil {
				return 0, werr
			}
		}
		c.s.sent.Add(int64(n))
	}
	return n, err
}

func (c *countingReader) Close() error {
	c.once.Do(func() {
		c.s.rmu.Lock()
		if c.s.reading[c.name]--; c.s.reading[c.name] <= 0 {
			delete(c.s.reading, c.name)
		}
		c.s.rmu.Unlock()
	})
	return c.f.Close()
}

func (h *rootHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	flags := os.O_WRONLY | os.O_CREATE
	pf := r.Pflags()
	if pf.Trunc {
		flags |= os.O_TRUNC
	}
	if pf.Excl {
		flags |= os.O_EXCL
	}
	return h.s.root.OpenFile(rel(r.Filepath), flags, 0o644)
}

func (h *rootHandler) Filecmd(r *sftp.Request) error {
	root := h.s.root
	switch r.Method {
	case "Setstat":
		a := r.Attributes()
		if r.AttrFlags().Size {
			f, err := root.OpenFile(rel(r.Filepath), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Truncate(int64(a.Size)); err != nil {
				return err
			}
		}
		if r.AttrFlags().Permissions {
			if err := root.Chmod(rel(r.Filepath), a.FileMode().Perm()); err != nil {
				return err
			}
		}
		if r.AttrFlags().Acmodtime {
			return root.Chtimes(rel(r.Filepath), a.AccessTime(), a.ModTime())
		}
		return nil
	case "Rename":
		// As SFTP version 3 says (and OpenSSH does): never over an existing file.
		if _, err := root.Lstat(rel(r.Target)); err == nil {
			return os.ErrExist
		}
		return root.Rename(rel(r.Filepath), rel(r.Target))
	case "Rmdir", "Remove":
		return root.Remove(rel(r.Filepath))
	case "Mkdir":
		return root.Mkdir(rel(r.Filepath), 0o755)
	case "Symlink", "Link":
		return sftp.ErrSSHFxOpUnsupported
	}
	return sftp.ErrSSHFxOpUnsupported
}

type listerat []os.FileInfo

func (l listerat) ListAt(ls []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(ls, l[off:])
	if n < len(ls) {
		return n, io.EOF
	}
	return n, nil
}

func (h *rootHandler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	root := h.s.root
	switch r.Method {
	case "List":
		d, err := root.Open(rel(r.Filepath))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		fis, err := d.Readdir(-1)
		if err != nil {
			return nil, err
		}
		return listerat(fis), nil
	case "Stat":
		fi, err := root.Stat(rel(r.Filepath))
		if err != nil {
			return nil, err
		}
		return listerat{fi}, nil
	case "Readlink":
		return nil, sftp.ErrSSHFxOpUnsupported
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat answers like Stat: the served tree is read through os.Root, which resolves links inside it.
func (h *rootHandler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := h.s.root.Lstat(rel(r.Filepath))
	if err != nil {
		return nil, err
	}
	return listerat{fi}, nil
}

// NewHostKey generates an Ed25519 host key and returns the signer and its PEM (OpenSSH format).
func NewHostKey() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return signer, pem.EncodeToMemory(blk), nil
}

// LoadOrCreateKey reads an OpenSSH private key from file, or generates one there (mode 0600).
func LoadOrCreateKey(file string) (ssh.Signer, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		return ssh.ParsePrivateKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	signer, pemBytes, err := NewHostKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		return nil, err
	}
	return signer, nil
}

// KnownHostsLine returns the known_hosts line that pins key for addr ("host:port").
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
}
