package kafkaconn_test

import (
	"crypto/tls"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/testpki"
)

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
	p := testpki.New(t, "kafkasync test CA")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12}
	tlsOn := config.TLS{Enable: true, CAFile: p.CAFile}

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
		other := testpki.New(t, "another CA")
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: config.TLS{Enable: true, CAFile: other.CAFile}}); err == nil {
			t.Fatal("connected to a broker whose certificate the CA file does not vouch for")
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		mtls := serverTLS.Clone()
		mtls.ClientAuth, mtls.ClientCAs = tls.RequireAndVerifyClientCert, p.Pool
		brokers := cluster(t, kfake.TLS(mtls))
		if err := publish(config.Kafka{Brokers: brokers, ClientID: "t", TLS: config.TLS{Enable: true, CAFile: p.CAFile,
			CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile}}); err != nil {
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
