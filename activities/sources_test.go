package activities_test

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"golang.org/x/crypto/ssh"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/samplefile"
	"github.com/kafkasync/kafkasync/internal/sftpserver"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/workers"
)

// partners are three sources beside the default one: OpenSSH's sshd logged into with an encrypted
// key, an in-process server (its own host key and account) with a password, and a second sshd
// (its own host key) logged into with the password of a system account of its own.
type partners struct {
	cfg        config.Config
	sshdRoot   string // where sshd's files are (it serves this machine's absolute paths)
	passServer *sftpserver.Server
	passRoot   string
	// sshdPassRoot is readable by partner-c's account.
	sshdPassRoot string
}

// partnerCAccount is the system account partner-c's sshd lets in with a password.
const partnerCAccount = "kafkasync-sftp-test"

func startPartners(t *testing.T, env *testenv.Env) *partners {
	t.Helper()
	p := &partners{cfg: env.Cfg, sshdRoot: t.TempDir(), passRoot: t.TempDir()}
	dir := t.TempDir()
	sshd, err := devstack.StartSSHD(context.Background(), filepath.Join(dir, "sshd"), "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sshd.Stop)
	if out, err := exec.Command("ssh-keygen", "-q", "-p", "-N", "partner-a-passphrase", "-f", sshd.KeyFile).CombinedOutput(); err != nil {
		t.Fatalf("encrypt the client key: %v: %s", err, out)
	}
	knownA := filepath.Join(dir, "known_hosts_a")
	os.WriteFile(knownA, []byte(knownHostsLine(sshd.Addr, sshd.HostKeys["ed25519"])+"\n"), 0o644)

	hostKey, _, err := sftpserver.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	p.passServer, err = sftpserver.Start(sftpserver.Options{Listen: "127.0.0.1:0", Root: p.passRoot, HostKey: hostKey,
		User: "partner-b", Password: "partner-b-password"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.passServer.Close() })
	c := startPasswordSSHD(t, filepath.Join(dir, "sshd-c"))
	p.sshdPassRoot = c.root

	p.cfg.Sources = map[string]config.Source{
		"partner-a": {Addr: sshd.Addr, User: sshd.User, KeyFile: sshd.KeyFile, KeyPassphrase: "partner-a-passphrase",
			KnownHosts: knownA, DialTimeout: config.Duration(5 * time.Second), MaxConnections: 4, SharedConnections: 1},
		"partner-b": {Addr: p.passServer.Addr(), User: "partner-b", Password: "partner-b-password", HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))),
			DialTimeout: config.Duration(5 * time.Second), MaxJobs: 1, Bandwidth: 4 << 20},
		"partner-c": {Addr: c.sshd.Addr, User: partnerCAccount, Password: config.Secret(c.password), KnownHosts: c.knownHosts,
			DialTimeout: config.Duration(5 * time.Second), MaxConnections: 2},
	}
	return p
}

type passwordSSHD struct {
	sshd                 *devstack.SSHD
	password, knownHosts string
	root                 string
}

// startPasswordSSHD runs sshd for partner-c's system account with a password made for this run,
// locked again when the test ends. It needs root, as useradd does.
func startPasswordSSHD(t *testing.T, dir string) passwordSSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partner-c's sshd logs into a system account of its own, which only root can create")
	}
	pw := make([]byte, 18)
	rand.Read(pw)
	p := passwordSSHD{password: hex.EncodeToString(pw)}
	if err := devstack.SystemAccount(partnerCAccount, p.password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devstack.LockSystemAccount(partnerCAccount) })
	var err error
	if p.sshd, err = devstack.StartPasswordSSHD(context.Background(), dir, partnerCAccount); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.sshd.Stop)
	p.knownHosts = filepath.Join(dir, "known_hosts")
	os.WriteFile(p.knownHosts, []byte(knownHostsLine(p.sshd.Addr, p.sshd.HostKeys["ed25519"])+"\n"), 0o644)
	if p.root, err = os.MkdirTemp("", "kafkasync-partner-c-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p.root, 0o755) // the account reads it
	t.Cleanup(func() { os.RemoveAll(p.root) })
	return p
}

// partnersTransfer starts the stack and the partners, and a worker's Transfer for all four sources.
func partnersTransfer(t *testing.T) (*testenv.Env, *partners, *activities.Transfer) {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	p := startPartners(t, env)
	tr, closeT, err := workers.NewTransfer(context.Background(), p.cfg, env.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeT)
	return env, p, tr
}

// knownHostsLine is a known_hosts line for an sshd public key line ("ssh-ed25519 AAAA…").
func knownHostsLine(addr, pubLine string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("[%s]:%s %s", host, port, pubLine)
}

func writeAt(t *testing.T, path string, size int64, seed uint64) string {
	t.Helper()
	sum, err := samplefile.Write(path, size, seed)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func fileMD5(t *testing.T, root *os.Root, name string) string {
	t.Helper()
	b, err := root.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// Jobs from four sources at once, each with its own server, host key, account and limits: the
// bandwidth cap of one holds (32 MiB at 4 MiB/s takes 8 s ± 15 %), its job limit holds, and a job
// naming a source the worker does not know fails for good.
func TestSourcesEachWithTheirOwnServerKeyAndLimits(t *testing.T) {
	env, p, tr := partnersTransfer(t)

	const capped = 32 << 20
	sumCapped := writeAt(t, filepath.Join(p.passRoot, "out/big.bin"), capped, 1)
	sumA := writeAt(t, filepath.Join(p.sshdRoot, "a.bin"), 3<<20, 2)
	sumDefault := env.WriteFile(t, "d.bin", 2<<20, 3)
	sumC := writeAt(t, filepath.Join(p.sshdPassRoot, "c.bin"), 3<<20, 4)
	os.Chmod(filepath.Join(p.sshdPassRoot, "c.bin"), 0o644)
	var s testsuite.WorkflowTestSuite
	download := func(in activities.DownloadInput) (activities.DownloadResult, time.Duration, error) {
		e := s.NewTestActivityEnvironment()
		e.RegisterActivity(tr)
		start := time.Now()
		v, err := e.ExecuteActivity(tr.Download, in)
		var dl activities.DownloadResult
		if err == nil {
			v.Get(&dl)
		}
		return dl, time.Since(start), err
	}

	var wg sync.WaitGroup
	var cappedTook time.Duration
	wg.Go(func() {
		var err error
		_, cappedTook, err = download(activities.DownloadInput{JobID: "b-big", Source: "partner-b", RemotePath: "/out/big.bin",
			Size: capped, RangeSize: 4 << 20})
		if err != nil {
			t.Errorf("partner-b: %v", err)
		}
	})
	wg.Go(func() {
		if _, _, err := download(activities.DownloadInput{JobID: "a-1", Source: "partner-a", RemotePath: filepath.Join(p.sshdRoot, "a.bin"),
			Size: 3 << 20, RangeSize: 1 << 20}); err != nil {
			t.Errorf("partner-a: %v", err)
		}
	})
	wg.Go(func() {
		if _, _, err := download(activities.DownloadInput{JobID: "d-1", RemotePath: "/d.bin", Size: 2 << 20, RangeSize: 1 << 20}); err != nil {
			t.Errorf("default: %v", err)
		}
	})
	wg.Go(func() {
		if _, _, err := download(activities.DownloadInput{JobID: "c-1", Source: "partner-c", RemotePath: filepath.Join(p.sshdPassRoot, "c.bin"),
			Size: 3 << 20, RangeSize: 1 << 20}); err != nil {
			t.Errorf("partner-c: %v", err)
		}
	})
	wg.Wait()
	for id, want := range map[string]string{"b-big": sumCapped, "a-1": sumA, "d-1": sumDefault, "c-1": sumC} {
		if got := fileMD5(t, tr.Staging, activities.StagingName(id)); got != want {
			t.Errorf("%s: md5 %s, the source's file has %s", id, got, want)
		}
	}
	t.Logf("32 MiB from partner-b capped at 4 MiB/s took %s (%.2f MiB/s)", cappedTook.Round(time.Millisecond),
		float64(capped)/(1<<20)/cappedTook.Seconds())
	if cappedTook < 6800*time.Millisecond || cappedTook > 9200*time.Millisecond {
		t.Errorf("32 MiB at 4 MiB/s took %s, want 8 s ± 15 %%", cappedTook)
	}

	// partner-b allows one job at a time across workers: two downloads at once read one file at a time.
	for i := range 2 {
		writeAt(t, filepath.Join(p.passRoot, fmt.Sprintf("out/%d.bin", i)), 1<<20, uint64(10+i))
	}
	p.passServer.ResetPeak()
	for i := range 2 {
		wg.Go(func() {
			if _, _, err := download(activities.DownloadInput{JobID: fmt.Sprint("b-", i), Source: "partner-b",
				RemotePath: fmt.Sprintf("/out/%d.bin", i), Size: 1 << 20, RangeSize: 1 << 20}); err != nil {
				t.Errorf("partner-b %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if peak := p.passServer.PeakFilesRead(); peak != 1 {
		t.Errorf("partner-b (max_jobs 1) had %d files read at once", peak)
	}

	if _, _, err := download(activities.DownloadInput{JobID: "x", Source: "partner-x", RemotePath: "/d.bin", Size: 1, RangeSize: 1 << 20}); errType(err) != activities.ErrTypeUnknownSource {
		t.Errorf("unknown source: %v, want %s", err, activities.ErrTypeUnknownSource)
	}
	// A stat names its source too: the file exists only on partner-a.
	e := s.NewTestActivityEnvironment()
	e.RegisterActivity(tr)
	if _, err := e.ExecuteActivity(tr.Stat, activities.StatInput{Source: "partner-a", RemotePath: filepath.Join(p.sshdRoot, "a.bin"), ExpectedSize: 3 << 20}); err != nil {
		t.Errorf("stat on partner-a: %v", err)
	}
	if _, err := e.ExecuteActivity(tr.Stat, activities.StatInput{RemotePath: filepath.Join(p.sshdRoot, "a.bin"), ExpectedSize: -1}); errType(err) != activities.ErrTypeRemoteNotFound {
		t.Errorf("stat of partner-a's file on the default source: %v", err)
	}
}

// A wrong passphrase, a missing one, a wrong password and a host key pinned for another source
// are each refused with an error that names the cause.
func TestSourceCredentialsRefused(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	p := startPartners(t, env)
	a, b := p.cfg.Sources["partner-a"], p.cfg.Sources["partner-b"]
	for name, tc := range map[string]struct {
		src  config.Source
		want string
	}{
		"wrong passphrase": {func() config.Source { s := a; s.KeyPassphrase = "nope"; return s }(), "passphrase"},
		"no passphrase":    {func() config.Source { s := a; s.KeyPassphrase = ""; return s }(), "key_passphrase"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := p.cfg
			cfg.Sources = map[string]config.Source{"partner-a": tc.src}
			_, closeT, err := workers.NewTransfer(context.Background(), cfg, env.Logger(t))
			if err == nil {
				closeT()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "partner-a") {
				t.Fatalf("error %q does not say %q of partner-a", err, tc.want)
			}
		})
	}
	wrongPassword, otherKey := b, b
	wrongPassword.Password = "wrong"
	wrongOnSSHD := p.cfg.Sources["partner-c"]
	wrongOnSSHD.Password = "wrong"
	otherKey.HostKey = env.Cfg.SFTP.HostKey
	if otherKey.HostKey == "" {
		line, _ := os.ReadFile(env.Cfg.SFTP.KnownHosts)
		f := strings.Fields(string(line))
		otherKey.HostKey = f[1] + " " + f[2]
	}
	for name, tc := range map[string]struct {
		src  config.Source
		want string
	}{"wrong password": {wrongPassword, activities.ErrTypeAuth}, "the default source's host key": {otherKey, activities.ErrTypeHostKey},
		"wrong password on sshd": {wrongOnSSHD, activities.ErrTypeAuth}} {
		t.Run(name, func(t *testing.T) {
			cfg := p.cfg
			cfg.Sources = map[string]config.Source{"partner-b": tc.src}
			tr, closeT, err := workers.NewTransfer(context.Background(), cfg, env.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer closeT()
			var s testsuite.WorkflowTestSuite
			e := s.NewTestActivityEnvironment()
			e.RegisterActivity(tr)
			_, err = e.ExecuteActivity(tr.Stat, activities.StatInput{Source: "partner-b", RemotePath: "/out/x", ExpectedSize: -1})
			if errType(err) != tc.want {
				t.Fatalf("err %v, want %s", err, tc.want)
			}
		})
	}
}

// What becomes of the remote file, on OpenSSH's sshd and the in-process server: delete removes it;
// move puts it under the directory at its own path and never over another file; a file rewritten
// since it was archived is kept; a replay of a job whose file was moved on failure says where it is.
func TestDisposeDeletesOrMovesNeverOverwrites(t *testing.T) {
	env, p, tr := partnersTransfer(t)
	var s testsuite.WorkflowTestSuite
	run := func(in activities.DisposeInput) (activities.DisposeResult, error) {
		e := s.NewTestActivityEnvironment()
		e.RegisterActivity(tr)
		v, err := e.ExecuteActivity(tr.Dispose, in)
		var r activities.DisposeResult
		if err == nil {
			v.Get(&r)
		}
		return r, err
	}
	for _, srv := range []struct {
		name, source string
		local        func(remote string) string // where the server keeps a remote path
		remote       func(rel string) string
	}{
		{"in-process", "", func(r string) string { return filepath.Join(env.Stack.SFTP.Root, r) }, func(rel string) string { return "/" + rel }},
		{"sshd", "partner-a", func(r string) string { return r }, func(rel string) string { return filepath.Join(p.sshdRoot, rel) }},
	} {
		t.Run(srv.name, func(t *testing.T) {
			put := func(rel string, seed uint64) (string, activities.DisposeInput) {
				remote := srv.remote(rel)
				writeAt(t, srv.local(remote), 1000, seed)
				fi, err := os.Stat(srv.local(remote))
				if err != nil {
					t.Fatal(err)
				}
				return remote, activities.DisposeInput{Source: srv.source, RemotePath: remote, Size: fi.Size(), ModTime: fi.ModTime().Truncate(time.Second)}
			}
			remote, in := put("out/del.csv", 1)
			in.Action = "delete"
			if r, err := run(in); err != nil || r.Outcome != "deleted" {
				t.Fatalf("delete: %+v %v", r, err)
			}
			if _, err := os.Stat(srv.local(remote)); !os.IsNotExist(err) {
				t.Fatalf("deleted file still there: %v", err)
			}
			if r, err := run(in); err != nil || r.Outcome != "gone" {
				t.Fatalf("delete again (a retry): %+v %v", r, err)
			}

			doneDir := srv.remote("done")
			var tos []string
			for i := range 3 {
				remote, in := put("out/m.csv", uint64(10+i))
				in.Action, in.Dir = "move", doneDir
				r, err := run(in)
				if err != nil || r.Outcome != "moved" {
					t.Fatalf("move %d: %+v %v", i, r, err)
				}
				if _, err := os.Stat(srv.local(remote)); !os.IsNotExist(err) {
					t.Fatalf("moved file still at %s", remote)
				}
				tos = append(tos, r.To)
			}
			base := doneDir + srv.remote("out/m.csv")
			if tos[0] != base || tos[1] != base+".1" || tos[2] != base+".2" {
				t.Fatalf("moved to %v, want %s, .1, .2", tos, base)
			}
			for i, to := range tos {
				if got, _ := os.ReadFile(srv.local(to)); len(got) != 1000 {
					t.Fatalf("%s: %d bytes", to, len(got))
				}
				if i > 0 && md5Local(t, srv.local(to)) == md5Local(t, srv.local(tos[i-1])) {
					t.Fatalf("%s holds the same bytes as %s: overwritten", to, tos[i-1])
				}
			}

			remote, in = put("out/changed.csv", 20)
			in.Action, in.Size = "delete", in.Size-1
			if _, err := run(in); errType(err) != activities.ErrTypeRemoteChanged {
				t.Fatalf("a rewritten file: %v, want RemoteChanged", err)
			}
			if _, err := os.Stat(srv.local(remote)); err != nil {
				t.Fatalf("a rewritten file was not kept: %v", err)
			}

			// A replay finds the file where on_failure moved it, and says so.
			remote, in = put("out/failed.csv", 30)
			in.Action, in.Dir = "move", srv.remote("failed")
			if _, err := run(in); err != nil {
				t.Fatal(err)
			}
			e := s.NewTestActivityEnvironment()
			e.RegisterActivity(tr)
			_, err := e.ExecuteActivity(tr.Stat, activities.StatInput{Source: srv.source, RemotePath: remote, ExpectedSize: -1, FailedDir: in.Dir})
			if errType(err) != activities.ErrTypeRemoteNotFound || !strings.Contains(err.Error(), "on_failure moved it to "+in.Dir+remote) {
				t.Fatalf("stat of a file moved on failure: %v", err)
			}
		})
	}
}

func md5Local(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
