package kafkaconn_test

import (
	"testing"

	"github.com/kafkasync/kafkasync/internal/config"
)

// The TLS and SASL paths are tested against the Apache Kafka broker in starter/security_test.go.

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
