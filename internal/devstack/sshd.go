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
// offered in that order (Debian's is rsa, ecdsa, ed25519), and a client key for the current user.
// Keys already in dir are kept.
func StartSSHD(ctx context.Context, dir string, keyTypes ...string) (*SSHD, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	s := &SSHD{User: u.Username, KeyFile: filepath.Join(dir, "client_key"), HostKeys: map[string]string{}}
	auth := "PasswordAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n" +
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys") + "\n"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	client, err := keygen("ed25519", s.KeyFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(client+"\n"), 0o600); err != nil {
		return nil, err
	}
	return s, s.start(ctx, dir, keyTypes, auth)
}

// StartPasswordSSHD runs sshd -D with an ed25519 host key in dir, accepting only the password of
// account, a system account (see SystemAccount), for SFTP only.
func StartPasswordSSHD(ctx context.Context, dir, account string) (*SSHD, error) {
	s := &SSHD{User: account, HostKeys: map[string]string{}}
	auth := "PasswordAuthentication yes\nPubkeyAuthentication no\nPermitEmptyPasswords no\nAllowUsers " + account +
		"\nForceCommand internal-sftp\n"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return s, s.start(ctx, dir, []string{"ed25519"}, auth)
}

// SystemAccount makes sure the system account name exists with this password and no shell (as
// root only: useradd and chpasswd), for a password login to sshd.
func SystemAccount(name, password string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("a system account for sshd's password login needs root")
	}
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			return fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
	}
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chpasswd %s: %v: %s", name, err, out)
	}
	return nil
}

// LockSystemAccount locks the password of a SystemAccount, so that no other sshd accepts it.
func LockSystemAccount(name string) error {
	if out, err := exec.Command("usermod", "--lock", name).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod --lock %s: %v: %s", name, err, out)
	}
	return nil
}

// start writes the configuration (host keys of keyTypes, then auth) and runs sshd until it listens.
func (s *SSHD) start(ctx context.Context, dir string, keyTypes []string, auth string) error {
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("OpenSSH's sshd is missing: apt-get install openssh-server")
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	port, err := FreePort()
	if err != nil {
		return err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nPidFile %s\n", port, filepath.Join(dir, "sshd.pid"))
	for _, typ := range keyTypes {
		f := filepath.Join(dir, "ssh_host_"+typ+"_key")
		if s.HostKeys[typ], err = keygen(typ, f); err != nil {
			return err
		}
		conf += "HostKey " + f + "\n"
	}
	conf += auth + "KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		return err
	}
	s.cmd = exec.Command(bin, "-D", "-e", "-f", cfgFile)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return fmt.Errorf("sshd did not start: %s", stderr.String())
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
