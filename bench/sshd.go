package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSHD is a second OpenSSH sshd on loopback, with its own host key and key authentication; it
// serves SFTP with internal-sftp, so remote paths are this machine's absolute paths.
type SSHD struct {
	Addr       string
	User       string
	KeyFile    string // client private key
	KnownHosts string // OpenSSH known_hosts for Addr (and any alias added with Trust)
	HostAlias  string // the host key under a name, for ssh -o HostKeyAlias
	dir        string
	hostPub    string
	cmd        *exec.Cmd
}

func keygen(file string) error {
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	return nil
}

// StartSSHD runs /usr/sbin/sshd -D with a configuration in dir.
func StartSSHD(ctx context.Context, dir string) (*SSHD, error) {
	bin, err := exec.LookPath("sshd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/sshd"); serr != nil {
			return nil, fmt.Errorf("OpenSSH's sshd is missing: apt-get install openssh-server (make bench-deps)")
		}
		bin = "/usr/sbin/sshd"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	hostKey, clientKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "client_key")
	for _, k := range []string{hostKey, clientKey} {
		if _, err := os.Stat(k); err != nil {
			if err := keygen(k); err != nil {
				return nil, err
			}
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		return nil, err
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, hostKey, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	s := &SSHD{Addr: "127.0.0.1:" + strconv.Itoa(port), User: u.Username, KeyFile: clientKey, dir: dir,
		KnownHosts: filepath.Join(dir, "known_hosts"), HostAlias: "kafkasync-bench", hostPub: strings.TrimSpace(string(hostPub))}
	if err := s.Trust(s.Addr); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "-D", "-e", "-f", cfgFile)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("sshd did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// Stop ends sshd.
func (s *SSHD) Stop() {
	if s != nil && s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}
