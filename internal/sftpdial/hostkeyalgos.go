package sftpdial

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// certAlgorithms are the host certificate algorithms offered when known_hosts trusts a certificate
// authority for the host: the CA's key type says nothing about the host key's.
var certAlgorithms = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01,
}

// algorithmsFor lists the host key algorithms that a key of type keyType signs with. Servers
// offering several keys present the first of the client's algorithms they have a key for, so
// offering only these makes the server present this key and not another.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{keyType}
	}
}

// knownAlgorithms lists the host key algorithms of the keys file holds for addr, in file order,
// certificates (from @cert-authority lines) first; nil when file holds none for addr. It asks the
// knownhosts callback about a key no file holds: the refusal lists every key that matches addr,
// found with knownhosts' own matching (hashed names, patterns, ports).
func knownAlgorithms(cb ssh.HostKeyCallback, file, addr string) ([]string, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probe); !errors.As(err, &ke) {
		return nil, fmt.Errorf("sftp known_hosts: looking up %s: %v", addr, err)
	}
	ca, err := authorityLines(file)
	if err != nil {
		return nil, err
	}
	var certs, plain []string
	for _, k := range ke.Want {
		if ca[k.Line] {
			certs = certAlgorithms
			continue
		}
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !slices.Contains(plain, a) {
				plain = append(plain, a)
			}
		}
	}
	return slices.Concat(certs, plain), nil
}

// authorityLines returns the numbers of file's @cert-authority lines.
func authorityLines(file string) (map[int]bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sftp known_hosts: %w", err)
	}
	out := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if bytes.HasPrefix(bytes.TrimSpace(sc.Bytes()), []byte("@cert-authority")) {
			out[n] = true
		}
	}
	return out, sc.Err()
}
