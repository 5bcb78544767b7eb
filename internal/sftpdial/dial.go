// Package sftpdial opens SFTP sessions with the server's host key always verified, against a
// known_hosts file or a pinned key. There is no way to switch verification off.
package sftpdial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kafkasync/kafkasync/internal/config"
)

// ErrHostKey means the server's host key is unknown or differs from the expected one. A retry cannot
// fix it.
var ErrHostKey = errors.New("ssh host key not trusted")

// ErrAuth means the server refused the credentials. A retry cannot fix it.
var ErrAuth = errors.New("ssh authentication refused")

// Dialer opens SFTP sessions to one server. It is safe for concurrent use.
type Dialer struct {
	addr    string
	timeout time.Duration
	cfg     *ssh.ClientConfig
}

// New builds a Dialer from the sftp config section, reading the key and known_hosts files once.
func New(c config.Source) (*Dialer, error) {
	hk, algos, err := hostKeyCallback(c)
	if err != nil {
		return nil, err
	}
	var auth []ssh.AuthMethod
	if c.KeyFile != "" {
		b, err := os.ReadFile(c.KeyFile)
		if err != nil && !(errors.Is(err, os.ErrNotExist) && c.Password != "") {
			return nil, fmt.Errorf("sftp key file: %w", err)
		}
		if err == nil {
			signer, err := parseKey(b, c.KeyPassphrase)
			if err != nil {
				return nil, fmt.Errorf("sftp key file %s: %w", c.KeyFile, err)
			}
			auth = append(auth, ssh.PublicKeys(signer))
		}
	}
	if c.Password != "" {
		auth = append(auth, ssh.Password(c.Password.Reveal()))
	}
	if len(auth) == 0 {
		return nil, errors.New("sftp: no credentials: set key_file or password")
	}
	timeout := c.DialTimeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Dialer{addr: c.Address(), timeout: timeout, cfg: &ssh.ClientConfig{
		User:            c.User,
		Auth:            auth,
		HostKeyCallback: hk,
		// Only the expected key's algorithms: a server with several host keys presents the first the
		// client offers, which need not be the one pinned or known.
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
		Config: ssh.Config{
			// AES-GCM first: the fastest cipher on CPUs with AES instructions.
			Ciphers: []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"},
		},
	}}, nil
}

// parseKey reads a private key, decrypting it with passphrase when it is encrypted.
func parseKey(pem []byte, passphrase config.Secret) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == "" {
			return nil, errors.New("the key is encrypted: set key_passphrase")
		}
		signer, err := ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("decrypt with key_passphrase: %w", err)
		}
		return signer, nil
	}
	return signer, err
}

// hostKeyCallback verifies the server's key against known_hosts or the pinned key, and lists the
// host key algorithms of the keys expected for c.Addr (nil: none known, the callback refuses all).
func hostKeyCallback(c config.Source) (ssh.HostKeyCallback, []string, error) {
	if c.KnownHosts != "" {
		cb, err := knownhosts.New(c.KnownHosts)
		if err != nil {
			return nil, nil, fmt.Errorf("sftp known_hosts: %w", err)
		}
		algos, err := knownAlgorithms(cb, c.KnownHosts, c.Address())
		if err != nil {
			return nil, nil, err
		}
		return func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := cb(host, remote, key); err != nil {
				var ke *knownhosts.KeyError
				if errors.As(err, &ke) {
					if len(ke.Want) == 0 {
						return fmt.Errorf("%w: %s offered %s %s, and %s has no key for it (unknown host)", ErrHostKey, host,
							key.Type(), ssh.FingerprintSHA256(key), c.KnownHosts)
					}
					var want []string
					for _, k := range ke.Want {
						want = append(want, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
					}
					return fmt.Errorf("%w: %s offered %s %s, known_hosts expects %s (host key changed?)", ErrHostKey, host,
						key.Type(), ssh.FingerprintSHA256(key), strings.Join(want, ", "))
				}
				return fmt.Errorf("%w: %s offered %s %s: %v", ErrHostKey, host, key.Type(), ssh.FingerprintSHA256(key), err)
			}
			return nil
		}, algos, nil
	}
	if c.HostKey != "" {
		want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey))
		if err != nil {
			return nil, nil, fmt.Errorf("sftp host_key: %w", err)
		}
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), want.Marshal()) {
				return fmt.Errorf("%w: %s offered %s %s, pinned %s %s", ErrHostKey, host, key.Type(), ssh.FingerprintSHA256(key),
					want.Type(), ssh.FingerprintSHA256(want))
			}
			return nil
		}, algorithmsFor(want.Type()), nil
	}
	return nil, nil, errors.New("sftp: set known_hosts or host_key: host keys are always verified")
}

// Client is one SSH connection carrying one SFTP session.
type Client struct {
	*sftp.Client
	conn *ssh.Client
}

// Close ends the SFTP session and the SSH connection.
func (c *Client) Close() error {
	err := c.Client.Close()
	if cerr := c.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort drops the connection at once, for a server that stopped answering: Close would wait for
// the server to acknowledge the end of the SFTP session.
func (c *Client) Abort() {
	c.conn.Close()
	c.Client.Close()
}

// Dial opens a new SSH connection and an SFTP session on it. Errors wrap ErrHostKey or ErrAuth when
// the cause is one of those.
func (d *Dialer) Dial(ctx context.Context, opts ...sftp.ClientOption) (*Client, error) {
	nd := net.Dialer{Timeout: d.timeout}
	nc, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	// Bound the handshake by the context too.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	nc.SetDeadline(time.Now().Add(d.timeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, d.addr, d.cfg)
	if err != nil {
		nc.Close()
		if errors.Is(err, ErrHostKey) {
			return nil, err
		}
		var ne *ssh.AlgorithmNegotiationError
		if errors.As(err, &ne) && ne.What == "host key" {
			return nil, fmt.Errorf("%w: %s has no host key of the types expected (%s)", ErrHostKey, d.addr,
				strings.Join(d.cfg.HostKeyAlgorithms, ", "))
		}
		if isAuthError(err) {
			return nil, fmt.Errorf("%w: %s as %s: %v", ErrAuth, d.addr, d.cfg.User, err)
		}
		return nil, fmt.Errorf("ssh handshake %s: %w", d.addr, err)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(c, chans, reqs)
	opts = append([]sftp.ClientOption{sftp.UseConcurrentReads(true)}, opts...)
	sc, err := sftp.NewClient(conn, opts...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sftp session %s: %w", d.addr, err)
	}
	return &Client{Client: sc, conn: conn}, nil
}

// DialRetry is Dial, tried again a few times when the handshake fails: servers limit handshakes in
// progress (OpenSSH's MaxStartups, 10 by default) and drop the connections beyond it, which a
// download opening many connections at once runs into. Host key and authentication errors are final.
func (d *Dialer) DialRetry(ctx context.Context) (*Client, error) {
	var err error
	for try := range 5 {
		var c *Client
		if c, err = d.Dial(ctx); err == nil {
			return c, nil
		}
		if errors.Is(err, ErrHostKey) || errors.Is(err, ErrAuth) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(try+1) * 150 * time.Millisecond):
		}
	}
	return nil, err
}

func isAuthError(err error) bool {
	var se *ssh.ServerAuthError
	if errors.As(err, &se) {
		return true
	}
	return bytes.Contains([]byte(err.Error()), []byte("unable to authenticate"))
}
