package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kafkasync/kafkasync/internal/devstack"
)

// SSHD is a second OpenSSH sshd on loopback, with an Ed25519 host key and key authentication; it
// serves SFTP with internal-sftp, so remote paths are this machine's absolute paths.
type SSHD struct {
	*devstack.SSHD
	KnownHosts string // OpenSSH known_hosts for Addr (and any alias added with Trust)
	HostAlias  string // the host key under a name, for ssh -o HostKeyAlias
	hostPub    string
}

// StartSSHD runs sshd with its configuration and keys in dir.
func StartSSHD(ctx context.Context, dir string) (*SSHD, error) {
	d, err := devstack.StartSSHD(ctx, dir, "ed25519")
	if err != nil {
		return nil, err
	}
	s := &SSHD{SSHD: d, KnownHosts: filepath.Join(dir, "known_hosts"), HostAlias: "kafkasync-bench", hostPub: d.HostKeys["ed25519"]}
	if err := s.Trust(s.Addr); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Trust adds the host key for addr (host:port) and for HostAlias to the known_hosts file.
func (s *SSHD) Trust(addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	line := fmt.Sprintf("[%s]:%s %s\n%s %s\n", host, port, s.hostPub, s.HostAlias, s.hostPub)
	f, err := os.OpenFile(s.KnownHosts, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(line)
	return err
}

// SSHOptions are the ssh client options every OpenSSH-based contender gets.
func (s *SSHD) SSHOptions() []string {
	return []string{"-i", s.KeyFile, "-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "HostKeyAlias=" + s.HostAlias,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
}
