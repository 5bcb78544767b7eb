package sftpdial_test

// These tests dial OpenSSH's sshd (/usr/sbin/sshd), started on loopback with the host keys a
// Debian install generates: RSA, ECDSA and Ed25519.

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// opensshd is OpenSSH's sshd with an RSA, an ECDSA and an Ed25519 host key.
type opensshd struct{ *devstack.SSHD }

// keygen makes a key pair that sshd does not have and returns its public key line.
func keygen(t *testing.T, typ, file string, args ...string) string {
	t.Helper()
	args = append([]string{"-q", "-t", typ, "-N", "", "-C", "", "-f", file}, args...)
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t %s: %v: %s", typ, err, out)
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pub))
}

// startSSHD runs sshd with its host keys in the order Debian's sshd_config lists them.
func startSSHD(t *testing.T) opensshd {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
	}
	d, err := devstack.StartSSHD(context.Background(), t.TempDir(), "rsa", "ecdsa", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return opensshd{d}
}

func (s opensshd) dial(t *testing.T, c config.Source) error {
	t.Helper()
	c.Addr, c.User, c.KeyFile, c.DialTimeout = s.Addr, s.User, s.KeyFile, config.Duration(5*time.Second)
	d, err := sftpdial.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := d.Dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Getwd()
	return err
}

// Each of the server's host keys, pinned or in known_hosts (by name, hashed, or next to another
// host's keys), is the one the server presents; a key it does not have is refused as a mismatch.
func TestHostKeyPinnedAgainstOpenSSH(t *testing.T) {
	s := startSSHD(t)
	host, port, _ := net.SplitHostPort(s.Addr)
	name := "[" + host + "]:" + port
	other := keygen(t, "ed25519", filepath.Join(t.TempDir(), "other"))
	p384 := keygen(t, "ecdsa", filepath.Join(t.TempDir(), "p384"), "-b", "384") // a type the server has no key of
	knownHosts := func(lines ...string) string {
		f := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, typ := range []string{"rsa", "ecdsa", "ed25519"} {
		key := s.HostKeys[typ]
		for _, tt := range []struct {
			name string
			c    config.Source
		}{
			{"host_key", config.Source{HostKey: key}},
			{"known_hosts", config.Source{KnownHosts: knownHosts(name + " " + key)}},
			{"known_hosts hashed", config.Source{KnownHosts: knownHosts(knownhosts.HashHostname(name) + " " + key)}},
			{"known_hosts among others", config.Source{KnownHosts: knownHosts("[127.0.0.2]:"+port+" "+s.HostKeys["ecdsa"],
				"other.example "+s.HostKeys["rsa"], name+" "+key)}},
		} {
			t.Run(typ+"/"+tt.name, func(t *testing.T) {
				if err := s.dial(t, tt.c); err != nil {
					t.Fatalf("pinned %s: %v", typ, err)
				}
			})
		}
	}
	for _, tt := range []struct {
		name string
		c    config.Source
	}{
		{"host_key", config.Source{HostKey: other}},
		{"known_hosts", config.Source{KnownHosts: knownHosts(name + " " + other)}},
		{"type the server lacks", config.Source{HostKey: p384}},
		{"unknown host", config.Source{KnownHosts: knownHosts("other.example " + s.HostKeys["ed25519"])}},
	} {
		t.Run("wrong key/"+tt.name, func(t *testing.T) {
			err := s.dial(t, tt.c)
			if !errors.Is(err, sftpdial.ErrHostKey) {
				t.Fatalf("err %v, want ErrHostKey", err)
			}
		})
	}
}
