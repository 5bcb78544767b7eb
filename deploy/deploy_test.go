// Package deploy_test checks the deployment files: the Kubernetes manifests decode strictly into
// the API types, and docker-compose.yml is consistent (every service, volume, file and port it
// names exists) and mounts a configuration kafkasync accepts. No container engine runs here: the
// compose stack itself is not started by the tests.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/kafkasync/kafkasync/internal/config"
)

func manifests(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	docs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(d)) != "" {
				docs[fmt.Sprintf("%s#%d", f, i)] = []byte(d)
			}
		}
	}
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	kinds := map[string]int{}
	var pods []struct {
		name string
		spec corev1.PodTemplateSpec
	}
	for name, doc := range manifests(t) {
		var tm metav1.TypeMeta
		if err := k8syaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "batch/v1 Job":
			obj = &batchv1.Job{}
		default:
			t.Fatalf("%s: unexpected kind %s %s", name, tm.APIVersion, tm.Kind)
		}
		if err := k8syaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: %s: %v", name, tm.Kind, err)
		}
		kinds[tm.Kind]++
		switch o := obj.(type) {
		case *appsv1.Deployment:
			pods = append(pods, struct {
				name string
				spec corev1.PodTemplateSpec
			}{o.Name, o.Spec.Template})
			if o.Name == "kafkasync-bridge" && *o.Spec.Replicas > 6 {
				t.Errorf("bridge replicas %d exceed the jobs topic's 6 partitions", *o.Spec.Replicas)
			}
		case *appsv1.StatefulSet:
			pods = append(pods, struct {
				name string
				spec corev1.PodTemplateSpec
			}{o.Name, o.Spec.Template})
			if len(o.Spec.VolumeClaimTemplates) == 0 {
				t.Errorf("%s: no volume for staging", o.Name)
			}
			hostID := false
			for _, e := range o.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "KAFKASYNC_TRANSFER_HOST_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
					e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
					hostID = true
				}
			}
			if !hostID {
				t.Errorf("%s: the host queue is not derived from the pod name", o.Name)
			}
		case *corev1.ConfigMap:
			f := filepath.Join(t.TempDir(), "kafkasync.toml")
			if err := os.WriteFile(f, []byte(o.Data["kafkasync.toml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(f, []string{"KAFKASYNC_TRANSFER_HOST_ID=kafkasync-worker-0"}); err != nil {
				t.Errorf("the ConfigMap's kafkasync.toml: %v", err)
			}
		}
	}
	for _, k := range []string{"ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "Job"} {
		if kinds[k] == 0 {
			t.Errorf("no %s", k)
		}
	}
	for _, p := range pods {
		c := p.spec.Spec.Containers[0]
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: liveness probe is not /healthz", p.name)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness probe is not /readyz", p.name)
		}
		if p.spec.Annotations["prometheus.io/scrape"] != "true" || p.spec.Annotations["prometheus.io/port"] == "" {
			t.Errorf("%s: no scrape annotations", p.name)
		}
		if sc := p.spec.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: may run as root", p.name)
		}
	}
	t.Logf("decoded %v", kinds)
}

var interpolation = regexp.MustCompile(`\$\{([A-Z_]+)(?::-([^}]*))?\}`)

// defaults replaces ${VAR:-default} with its default, as compose does with VAR unset.
func defaults(s string) string { return interpolation.ReplaceAllString(s, "$2") }

func TestComposeFileIsConsistent(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Build       any            `yaml:"build"`
			Command     any            `yaml:"command"`
			DependsOn   any            `yaml:"depends_on"`
			Environment map[string]any `yaml:"environment"`
			Volumes     []string       `yaml:"volumes"`
			Ports       []string       `yaml:"ports"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := []string{"kafka", "temporal", "temporal-db", "temporal-ui", "audit-db", "minio", "sftp", "bridge", "worker", "ui"}
	for _, s := range want {
		if _, ok := doc.Services[s]; !ok {
			t.Errorf("no service %s", s)
		}
	}
	ports := map[string]string{}
	images := map[string]bool{}
	for name, s := range doc.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("%s: image %q is not pinned", name, s.Image)
		}
		if s.Build != nil {
			images[s.Image] = true
		}
		var deps []string
		switch d := s.DependsOn.(type) {
		case []any:
			for _, x := range d {
				deps = append(deps, fmt.Sprint(x))
			}
		case map[string]any:
			for x := range d {
				deps = append(deps, x)
			}
		}
		for _, d := range deps {
			if _, ok := doc.Services[d]; !ok {
				t.Errorf("%s depends on unknown service %s", name, d)
			}
			if d == name {
				t.Errorf("%s depends on itself", name)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			switch {
			case strings.HasPrefix(src, "./"):
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s, which is not in the repository", name, src)
				}
			case strings.HasPrefix(src, "/"): // anonymous volume at that path
			default:
				if _, ok := doc.Volumes[src]; !ok {
					t.Errorf("%s uses volume %s, which is not declared", name, src)
				}
			}
		}
		for _, p := range s.Ports {
			host, _, _ := strings.Cut(p, ":")
			if other, dup := ports[host]; dup {
				t.Errorf("host port %s used by %s and %s", host, other, name)
			}
			ports[host] = name
		}
	}
	// Images the compose file builds: each is built by some service, and used ones exist.
	for name, s := range doc.Services {
		if s.Build == nil && strings.HasPrefix(s.Image, "kafkasync") && !images[s.Image] {
			t.Errorf("%s uses %s, which no service builds", name, s.Image)
		}
	}

	// kafkasync's services: the mounted config, with their environment, is valid.
	for _, name := range []string{"bridge", "worker", "ui"} {
		s := doc.Services[name]
		var env []string
		for k, v := range s.Environment {
			env = append(env, k+"="+defaults(fmt.Sprint(v)))
		}
		sort.Strings(env)
		cfgFile := ""
		for _, v := range s.Volumes {
			if src, dst, ok := strings.Cut(v, ":"); ok && strings.HasSuffix(strings.TrimSuffix(dst, ":ro"), "kafkasync.toml") {
				cfgFile = filepath.Join("..", src)
			}
		}
		if cfgFile == "" {
			t.Fatalf("%s mounts no kafkasync.toml", name)
		}
		cfg, err := config.Load(cfgFile, append(env, "KAFKASYNC_TRANSFER_HOST_ID=worker-1"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Kafka.Brokers[0] != "kafka:9092" || cfg.S3.Endpoint != "http://minio:9000" || cfg.SFTP.Addr != "sftp:22" ||
			cfg.Temporal.Address != "temporal:7233" || !strings.Contains(cfg.Postgres.DSN.Reveal(), "@audit-db:5432/") {
			t.Errorf("%s: config does not point at the compose services: %+v", name, cfg)
		}
		if name == "ui" && cfg.UI.APIKey == "" {
			t.Error("ui has no API key")
		}
	}
	if !bytes.Contains(raw, []byte("stop_grace_period")) {
		t.Error("the worker has no stop grace period for in-flight steps")
	}
}

// The Kafka broker the tests run (the Makefile's KAFKA_VERSION, fetched through deploy/kafka/pom.xml)
// is the one docker-compose.yml deploys.
func TestOneKafkaVersionEverywhere(t *testing.T) {
	read := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	m := regexp.MustCompile(`(?m)^KAFKA_VERSION := (\S+)$`).FindStringSubmatch(read("../Makefile"))
	if m == nil {
		t.Fatal("no KAFKA_VERSION in the Makefile")
	}
	want := m[1]
	found := map[string][]string{
		"deploy/kafka/pom.xml": regexp.MustCompile(`<kafka\.version>([^<]+)</kafka\.version>`).FindStringSubmatch(read("kafka/pom.xml")),
	}
	images := regexp.MustCompile(`image: apache/kafka:(\S+)`).FindAllStringSubmatch(read("../docker-compose.yml"), -1)
	if len(images) == 0 {
		t.Fatal("docker-compose.yml runs no apache/kafka image")
	}
	for i, im := range images {
		found[fmt.Sprintf("docker-compose.yml image %d", i+1)] = im
	}
	for where, m := range found {
		if m == nil || m[1] != want {
			t.Errorf("%s pins Kafka %v, the Makefile %s", where, m, want)
		}
	}
}

// The README's complete example configuration is one kafkasync accepts, with the sources, watch
// entries and actions it describes.
func TestREADMEExampleConfigLoads(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "### One complete example")
	_, block, ok2 := strings.Cut(after, "```toml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no complete example in a toml block")
	}
	f := filepath.Join(t.TempDir(), "k.toml")
	os.WriteFile(f, []byte(block), 0o600)
	cfg, err := config.Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	b2, ok := cfg.Source("partner-b")
	if !ok || len(b2.Watch) != 1 || b2.OnSuccessAction().Dir != "/archived" || cfg.Kafka.DoneTopic != "files.jobs.done" {
		t.Fatalf("partner-b %+v, done topic %s", b2, cfg.Kafka.DoneTopic)
	}
}
