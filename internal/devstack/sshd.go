package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"
)

// SSHD is OpenSSH's sshd on a loopback port, serving SFTP (internal-sftp) to the current user with
// key authentication; remote paths are this machine's absolute paths.
type SSHD struct {
	Addr    string
	User    string
	KeyFile string // the client's private key
	// HostKeys maps each host key type ("rsa", "ecdsa", "ed25519") to its public key line.
	HostKeys map[string]string
	cmd      *exec.Cmd
}

// Pid is sshd's process id.
func (d *SSHD) Pid() int { return d.cmd.Process.Pid }

// StartSSHD runs sshd -D with its configuration and keys in dir: a host key of each of keyTypes,
// offered in that order (Debian's is rsa, ecdsa, ed25519), and a client key. Keys already in dir
// are kept.
func StartSSHD(ctx context.Context, dir string, keyTypes ...string) (*SSHD, error) {
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("OpenSSH's sshd is missing: apt-get install openssh-server")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &SSHD{Addr: fmt.Sprintf("127.0.0.1:%d", port), User: u.Username, KeyFile: filepath.Join(dir, "client_key"),
		HostKeys: map[string]string{}}
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nPidFile %s\nAuthorizedKeysFile %s\n", port,
		filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	for _, typ := range keyTypes {
		f := filepath.Join(dir, "ssh_host_"+typ+"_key")
		if s.HostKeys[typ], err = keygen(typ, f); err != nil {
			return nil, err
		}
		conf += "HostKey " + f + "\n"
	}
	conf += "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n" +
		"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
	client, err := keygen("ed25519", s.KeyFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(client+"\n"), 0o600); err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "-D", "-e", "-f", cfgFile)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("sshd did not start: %s", stderr.String())
		}
	}
}

// keygen makes a key pair of typ at file unless one is there, and returns its public key line.
func keygen(typ, file string) (string, error) {
	if _, err := os.Stat(file); err != nil {
		out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "", "-f", file).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("ssh-keygen -t %s: %v: %s", typ, err, out)
		}
	}
	pub, err := os.ReadFile(file + ".pub")
	return strings.TrimSpace(string(pub)), err
}

// Stop ends sshd.
func (s *SSHD) Stop() {
	if s != nil && s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}
