package devstack

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kafkasync/kafkasync/internal/sftpserver"
)

// SFTP is the in-process SFTP server with its generated keys on disk: a host key that the known_hosts
// file pins, and a client key that it accepts.
type SFTP struct {
	Server     *sftpserver.Server
	Addr       string
	User       string
	Root       string // the folder served as "/"
	KeyFile    string // client private key
	KnownHosts string // known_hosts pinning the host key
}

// SFTPOptions configures StartSFTP.
type SFTPOptions struct {
	Dir      string // keys and known_hosts live here
	Root     string // served folder
	Port     int    // 0: free
	ReadRate int    // bytes per second, 0: unlimited
	Logger   *slog.Logger
}

// StartSFTP starts the server. Keys are generated once and kept in Dir.
func StartSFTP(o SFTPOptions) (*SFTP, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Root, 0o755); err != nil {
		return nil, err
	}
	hostKey, err := sftpserver.LoadOrCreateKey(filepath.Join(o.Dir, "host_key"))
	if err != nil {
		return nil, fmt.Errorf("sftp host key: %w", err)
	}
	keyFile := filepath.Join(o.Dir, "client_key")
	clientKey, err := sftpserver.LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("sftp client key: %w", err)
	}
	srv, err := sftpserver.Start(sftpserver.Options{
		Listen: "127.0.0.1:" + strconv.Itoa(o.Port), Root: o.Root, HostKey: hostKey, User: "kafkasync",
		AuthorizedKey: clientKey.PublicKey(), ReadRate: o.ReadRate, Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	kh := filepath.Join(o.Dir, "known_hosts")
	line := sftpserver.KnownHostsLine(srv.Addr(), hostKey.PublicKey()) + "\n"
	if err := os.WriteFile(kh, []byte(line), 0o644); err != nil {
		srv.Close()
		return nil, err
	}
	return &SFTP{Server: srv, Addr: srv.Addr(), User: "kafkasync", Root: o.Root, KeyFile: keyFile, KnownHosts: kh}, nil
}

// Stop closes the server.
func (s *SFTP) Stop() {
	if s != nil {
		s.Server.Close()
	}
}
