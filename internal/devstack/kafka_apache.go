package devstack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// apacheListeners are the ports of one broker start; the controller's port is its own.
type apacheListeners struct {
	plain, controller, tls, mtls, sasl int
}

// startApacheKafka runs one KRaft node (broker and controller in one JVM) from the jars in bin/kafka:
// the storage is formatted on first start, server.properties is written anew on every start. A
// port free a moment ago can be taken before the JVM binds it: a broker that exits while starting
// is started again on fresh ports (a port the caller chose is kept).
func startApacheKafka(ctx context.Context, o KafkaOptions) (*Kafka, error) {
	return startAgain(ctx, o.Log, "kafka", func() (*Kafka, error) { return startApacheKafkaOnce(ctx, o) })
}

func startApacheKafkaOnce(ctx context.Context, o KafkaOptions) (*Kafka, error) {
	home, err := FindKafkaHome(o.BinDir)
	if err != nil {
		return nil, err
	}
	java, err := findJava()
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("kafka broker: a data folder is needed")
	}
	confDir, dataDir := filepath.Join(o.Dir, "config"), filepath.Join(o.Dir, "data")
	for _, d := range []string{confDir, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ports, err := pickKafkaPorts(o)
	if err != nil {
		return nil, err
	}
	props, err := apacheServerProperties(o, confDir, dataDir, ports)
	if err != nil {
		return nil, err
	}
	serverProps, log4j := filepath.Join(confDir, "server.properties"), filepath.Join(confDir, "log4j2.properties")
	if err := writeProperties(serverProps, props); err != nil {
		return nil, err
	}
	if err := os.WriteFile(log4j, []byte(kafkaLog4j), 0o644); err != nil {
		return nil, err
	}
	// C1 only: the optimising compiler's warm-up costs a short-lived broker (a test, `kafkasync
	// dev`, the bench) more CPU than its faster code ever gives back on a machine of a few cores.
	jvm := []string{"-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + log4j, "-cp", filepath.Join(home, "libs", "*")}
	if err := formatKafkaStorage(ctx, java, jvm, serverProps, dataDir, o); err != nil {
		return nil, err
	}
	p, err := startProc("kafka", o.Log, nil, java, append(jvm, "kafka.Kafka", serverProps)...)
	if err != nil {
		return nil, err
	}
	k := &Kafka{Kind: KafkaApache, Version: kafkaVersion(home), DataDir: o.Dir,
		Brokers: []string{loopback(ports.plain)}, proc: p, stop: func() { p.stop(syscall.SIGTERM, 30*time.Second) }}
	if o.TLS != nil {
		k.TLSBrokers, k.MTLSBrokers, k.SASLBrokers = []string{loopback(ports.tls)}, []string{loopback(ports.mtls)}, []string{loopback(ports.sasl)}
	}
	if err := waitFor(ctx, p, 90*time.Second, kafkaAnswers(k.Brokers)); err != nil {
		k.Stop()
		return nil, err
	}
	if err := createTopics(ctx, k.Brokers, o.Partitions, o.Topics); err != nil {
		k.Stop()
		return nil, err
	}
	if err := upsertSCRAM(k.Brokers, o.Users); err != nil {
		k.Stop()
		return nil, err
	}
	if err := waitFor(ctx, p, 60*time.Second, groupsServed(k.Brokers)); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

func pickKafkaPorts(o KafkaOptions) (apacheListeners, error) {
	var l apacheListeners
	var err error
	if l.plain, err = portOrFree(o.Port); err != nil {
		return l, err
	}
	ports := []*int{&l.controller}
	if o.TLS != nil {
		ports = append(ports, &l.tls, &l.mtls, &l.sasl)
	}
	for _, p := range ports {
		if *p, err = FreePort(); err != nil {
			return l, err
		}
	}
	return l, nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// apacheServerProperties is the broker's configuration. Topics are created by StartKafka, never by
// a client asking for one; replication factors are 1 (one node).
func apacheServerProperties(o KafkaOptions, confDir, dataDir string, l apacheListeners) (map[string]string, error) {
	listeners := []string{"PLAINTEXT://" + loopback(l.plain), "CONTROLLER://" + loopback(l.controller)}
	advertised := []string{"PLAINTEXT://" + loopback(l.plain)}
	protocols := []string{"PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"}
	props := map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          "1",
		"controller.quorum.voters":                         "1@" + loopback(l.controller),
		"controller.listener.names":                        "CONTROLLER",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"log.dirs":                                         dataDir,
		"num.partitions":                                   strconv.Itoa(o.Partitions),
		"auto.create.topics.enable":                        "false",
		"offsets.topic.replication.factor":                 "1",
		"offsets.topic.num.partitions":                     "1",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		// A group's first member is assigned at once (production brokers wait 3 s for more members).
		"group.initial.rebalance.delay.ms": "0",
	}
	if o.TLS != nil {
		keystore, err := writePEMKeystore(o.TLS, filepath.Join(confDir, "keystore.pem"))
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, "SSL://"+loopback(l.tls), "MTLS://"+loopback(l.mtls), "SASL_SSL://"+loopback(l.sasl))
		advertised = append(advertised, "SSL://"+loopback(l.tls), "MTLS://"+loopback(l.mtls), "SASL_SSL://"+loopback(l.sasl))
		protocols = append(protocols, "SSL:SSL", "MTLS:SSL", "SASL_SSL:SASL_SSL")
		scram := "org.apache.kafka.common.security.scram.ScramLoginModule required;"
		props["listener.name.sasl_ssl.plain.sasl.jaas.config"] = plainJAAS(o.Users)
		for k, v := range map[string]string{
			"ssl.keystore.type": "PEM", "ssl.keystore.location": keystore,
			"ssl.truststore.type": "PEM", "ssl.truststore.location": o.TLS.CAFile,
			"listener.name.mtls.ssl.client.auth":                    "required",
			"sasl.enabled.mechanisms":                               "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
			"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
			"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
		} {
			props[k] = v
		}
	}
	props["listeners"] = strings.Join(listeners, ",")
	props["advertised.listeners"] = strings.Join(advertised, ",")
	props["listener.security.protocol.map"] = strings.Join(protocols, ",")
	for k, v := range o.BrokerConfig {
		props[k] = v
	}
	return props, nil
}

// writePEMKeystore writes the broker's key (as PKCS#8, the form Kafka reads) and certificate into
// one PEM file.
func writePEMKeystore(t *KafkaTLS, file string) (string, error) {
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return "", fmt.Errorf("kafka broker certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("kafka broker key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range pair.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return file, os.WriteFile(file, out, 0o600)
}

// plainJAAS lists the PLAIN users in the broker's login module configuration (PLAIN has no
// credential store of its own).
func plainJAAS(users []SASLUser) string {
	var b strings.Builder
	b.WriteString("org.apache.kafka.common.security.plain.PlainLoginModule required")
	for _, u := range users {
		if u.Mechanism == "PLAIN" {
			fmt.Fprintf(&b, " user_%s=%s", u.Name, strconv.Quote(u.Password))
		}
	}
	return b.String() + ";"
}

func writeProperties(file string, props map[string]string) error {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by kafkasync's devstack on every start\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

// formatKafkaStorage formats dataDir with a new cluster id unless an earlier start did.
func formatKafkaStorage(ctx context.Context, java string, jvm []string, serverProps, dataDir string, o KafkaOptions) error {
	if _, err := os.Stat(filepath.Join(dataDir, "meta.properties")); err == nil {
		return nil
	}
	id, err := clusterID()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, append(jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
		"--cluster-id", id, "--config", serverProps)...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("format kafka storage in %s: %w", dataDir, err)
	}
	return nil
}

// clusterID is a random cluster id as Kafka writes them (16 bytes, base64url), never starting with
// "-": the storage tool would read that as an option, and Kafka's own ids avoid it for this reason.
func clusterID() (string, error) {
	for {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id, nil
		}
	}
}

// kafkaAnswers succeeds once the broker returns metadata naming itself.
func kafkaAnswers(brokers []string) func(context.Context) error {
	return func(context.Context) error {
		sc := sarama.NewConfig()
		sc.Net.DialTimeout = 2 * time.Second
		sc.Metadata.Retry.Max = 0
		cl, err := sarama.NewClient(brokers, sc)
		if err != nil {
			return err
		}
		defer cl.Close()
		if len(cl.Brokers()) == 0 {
			return errors.New("no broker in the metadata yet")
		}
		return nil
	}
}

// groupsServed succeeds once the group coordinator answers: it creates the offsets topic on a
// fresh broker, and after a restart it refuses requests until it has loaded the committed offsets.
func groupsServed(brokers []string) func(context.Context) error {
	return func(context.Context) error {
		admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
		if err != nil {
			return err
		}
		defer admin.Close()
		_, err = admin.ListConsumerGroupOffsets("kafkasync-devstack-ready", nil)
		return err
	}
}

// upsertSCRAM creates or updates the SCRAM logins (the broker stores them in its metadata log).
func upsertSCRAM(brokers []string, users []SASLUser) error {
	mechanisms := map[string]sarama.ScramMechanismType{"SCRAM-SHA-256": sarama.SCRAM_MECHANISM_SHA_256, "SCRAM-SHA-512": sarama.SCRAM_MECHANISM_SHA_512}
	var ups []sarama.AlterUserScramCredentialsUpsert
	for _, u := range users {
		if m, ok := mechanisms[u.Mechanism]; ok {
			salt := make([]byte, 32) // the client picks the salt; the broker stores only the salted hash
			if _, err := rand.Read(salt); err != nil {
				return err
			}
			ups = append(ups, sarama.AlterUserScramCredentialsUpsert{Name: u.Name, Mechanism: m, Iterations: 4096, Salt: salt, Password: []byte(u.Password)})
		}
	}
	if len(ups) == 0 {
		return nil
	}
	sc := sarama.NewConfig()
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return err
	}
	defer admin.Close()
	res, err := admin.UpsertUserScramCredentials(ups)
	if err != nil {
		return fmt.Errorf("create SCRAM users: %w", err)
	}
	for _, r := range res {
		if !errors.Is(r.ErrorCode, sarama.ErrNoError) {
			return fmt.Errorf("create SCRAM user %s: %w", r.User, r.ErrorCode)
		}
	}
	return nil
}

const kafkaLog4j = `# the broker's own messages at WARN, and the line saying it started
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=kafka: [%d] %p %m (%c)%n
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
`

// FindKafkaHome locates the Apache Kafka broker's folder (kafka/, holding libs/) in the folders
// FindBin searches.
func FindKafkaHome(binDir string) (string, error) {
	var dirs []string
	for _, d := range binDirs(binDir) {
		dirs = append(dirs, filepath.Join(d, "kafka"))
		if m, _ := filepath.Glob(filepath.Join(d, "kafka", "libs", "kafka_2.13-*.jar")); len(m) > 0 {
			return filepath.Join(d, "kafka"), nil
		}
	}
	return "", fmt.Errorf("the Apache Kafka broker is not in %s: run `make tools` (or use --kafka=embedded)", strings.Join(dirs[:min(len(dirs), 3)], ", "))
}

// kafkaVersion reads the version from the broker's jar name.
func kafkaVersion(home string) string {
	m, _ := filepath.Glob(filepath.Join(home, "libs", "kafka_2.13-*.jar"))
	if len(m) == 0 {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m[0]), "kafka_2.13-"), ".jar")
}

func findJava() (string, error) {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		if p := filepath.Join(h, "bin", "java"); isExecutable(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", errors.New("java not found (JAVA_HOME or PATH): run `make deps`, or use --kafka=embedded")
	}
	return p, nil
}
