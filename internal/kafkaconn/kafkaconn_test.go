package kafkaconn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
)

// pki is a throw-away CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	dir            string
	ca             *x509.Certificate
	caKey          *ecdsa.PrivateKey
	pool           *x509.CertPool
	server, client tls.Certificate
	caFile         string
	clientCertFile string
	clientKeyFile  string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafkasync test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	p.server = p.issue(t, "server", x509.ExtKeyUsageServerAuth)
	p.client = p.issue(t, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	cf, kf := p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kd)
	if name == "client" {
		p.clientCertFile, p.clientKeyFile = cf, kf
	}
	c, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "jobs")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// publish connects as c says and publishes one message.
func publish(c config.Kafka) error {
	k, err := kafkaops.DialConfig(c)
	if err != nil {
		return err
	}
	defer k.Close()
	_, _, err = k.Send("jobs", []byte("k"), []byte(`{"remote_path":"/a"}`))
	return err
}

func TestTLSAndSASLAgainstARealBrokerProtocol(t *testing.T) {
	p := newPKI(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	tlsOn := config.TLS{Enable: true, CAFile: p.caFile}

	t.Run("TLS and SCRAM-SHA-512", func(t *testing.T) {
		brokers := cluster(t, kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kafkasync", "s3cret-scram"))
		c := config.Kafka{Brokers: brokers, ClientID: "t", TLS: tlsOn,
			SASL: config.SASL{Mechanism: "SCRAM-SHA-512", User: "kafkasync", Password: "s3cret-scram"}}
		if err := publish(c); err != nil {
			t.Fatalf("publish: %v", err)
		}
		c.SASL.Password = "wrong"
		if err := publish(c); err == nil {
			t.Fatal("a wrong SCRAM password was accepted")
		}
	})
	t.Run("TLS and SCRAM-SHA-256", func(t *testing.T) {
		brokers := cluster(t, kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "kafkasync", "s3cret-256"))
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: tlsOn,
			SASL: config.SASL{Mechanism: "SCRAM-SHA-256", User: "kafkasync", Password: "s3cret-256"}}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	})
	t.Run("TLS and PLAIN", func(t *testing.T) {
		brokers := cluster(t, kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("PLAIN", "kafkasync", "s3cret-plain"))
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: tlsOn,
			SASL: config.SASL{Mechanism: "PLAIN", User: "kafkasync", Password: "s3cret-plain"}}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	})
	t.Run("server certificate from another CA is refused", func(t *testing.T) {
		brokers := cluster(t, kfake.TLS(serverTLS))
		other := newPKI(t)
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: config.TLS{Enable: true, CAFile: other.caFile}}); err == nil {
			t.Fatal("connected to a broker whose certificate the CA file does not vouch for")
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		mtls := serverTLS.Clone()
		mtls.ClientAuth, mtls.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
		brokers := cluster(t, kfake.TLS(mtls))
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: config.TLS{Enable: true, CAFile: p.caFile,
			CertFile: p.clientCertFile, KeyFile: p.clientKeyFile}}); err != nil {
			t.Fatalf("with the client certificate: %v", err)
		}
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: tlsOn}); err == nil {
			t.Fatal("connected without a client certificate")
		}
	})
}

func TestPlainWithoutTLSIsRefusedByConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Kafka.SASL = config.SASL{Mechanism: "PLAIN", User: "u", Password: "p"}
	cfg.Transfer.HostID = "h"
	if err := cfg.Validate(); err == nil {
		t.Fatal("SASL PLAIN without TLS passed validation")
	}
	cfg.Kafka.TLS.Enable = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
