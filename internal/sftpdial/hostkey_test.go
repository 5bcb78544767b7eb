package sftpdial_test

// These tests dial OpenSSH's sshd (/usr/sbin/sshd), started on loopback with the host keys a
// Debian install generates: RSA, ECDSA and Ed25519.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// opensshd is a running sshd and what a client needs to reach it.
type opensshd struct {
	addr, user, clientKey string
	hostKeys              map[string]string // key type ("rsa", "ecdsa", "ed25519") → public key line
}

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

// startSSHD runs sshd -D with its host keys in the order Debian's sshd_config lists them.
func startSSHD(t *testing.T) opensshd {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
	}
	dir := t.TempDir()
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := opensshd{addr: fmt.Sprintf("127.0.0.1:%d", port), user: u.Username, clientKey: filepath.Join(dir, "client_key"),
		hostKeys: map[string]string{}}
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nPidFile %s\nAuthorizedKeysFile %s\n", port,
		filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	for _, typ := range []string{"rsa", "ecdsa", "ed25519"} {
		f := filepath.Join(dir, "ssh_host_"+typ+"_key")
		s.hostKeys[typ] = keygen(t, typ, f)
		conf += "HostKey " + f + "\n"
	}
	conf += "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n" +
		"StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(keygen(t, "ed25519", s.clientKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start: %s", stderr.String())
		}
	}
}

func (s opensshd) dial(t *testing.T, c config.SFTP) error {
	t.Helper()
	c.Addr, c.User, c.KeyFile, c.DialTimeout = s.addr, s.user, s.clientKey, config.Duration(5*time.Second)
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
	host, port, _ := net.SplitHostPort(s.addr)
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
		key := s.hostKeys[typ]
		for _, tt := range []struct {
			name string
			c    config.SFTP
		}{
			{"host_key", config.SFTP{HostKey: key}},
			{"known_hosts", config.SFTP{KnownHosts: knownHosts(name + " " + key)}},
			{"known_hosts hashed", config.SFTP{KnownHosts: knownHosts(knownhosts.HashHostname(name) + " " + key)}},
			{"known_hosts among others", config.SFTP{KnownHosts: knownHosts("[127.0.0.2]:"+port+" "+s.hostKeys["ecdsa"],
				"other.example "+s.hostKeys["rsa"], name+" "+key)}},
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
		c    config.SFTP
	}{
		{"host_key", config.SFTP{HostKey: other}},
		{"known_hosts", config.SFTP{KnownHosts: knownHosts(name + " " + other)}},
		{"type the server lacks", config.SFTP{HostKey: p384}},
		{"unknown host", config.SFTP{KnownHosts: knownHosts("other.example " + s.hostKeys["ed25519"])}},
	} {
		t.Run("wrong key/"+tt.name, func(t *testing.T) {
			err := s.dial(t, tt.c)
			if !errors.Is(err, sftpdial.ErrHostKey) {
				t.Fatalf("err %v, want ErrHostKey", err)
			}
		})
	}
}
