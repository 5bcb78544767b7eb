package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

// The archive in a browser: a viewer browses the archived files and downloads one (its bytes are
// the job's), with no delete offered, nor to an operator; an admin deletes one after typing its key on the
// confirmation page, and the listing then says who deleted it.
func TestArchiveInBrowser(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	cfg := env.Cfg
	p := startPipeline(t, env, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	for i, name := range []string{"alpha.csv", "beta.bin"} {
		sum := env.WriteFile(t, "arc/"+name, int64(200_000+i*50_000), uint64(20+i))
		p.publish(t, fmt.Sprintf("arc-%d", i), fmt.Sprintf(`{"id":"arc-%d","remote_path":"/arc/%s","md5":%q}`, i, name, sum))
	}
	var jobs []audit.Job
	for i := range 2 {
		id := fmt.Sprintf("arc-%d", i)
		waitStatus(t, ctx, p.store, id, audit.StatusSucceeded)
		j, err := p.store.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	s3c, err := s3client.New(cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui.New(ui.Options{Store: p.store, Logger: env.Logger(t), APIKey: dashboardKey, DLQTopic: cfg.Kafka.DLQTopic,
		Archive: &ui.ArchiveOptions{S3: s3c, Buckets: archive.Buckets(cfg)}}))
	defer srv.Close()
	for _, a := range []struct{ name, role string }{{"vera", audit.RoleViewer}, {"otto", audit.RoleOperator}, {"ada", audit.RoleAdmin}} {
		if _, err := p.store.AddAccount(ctx, a.name, a.role, a.name+"'s long password", "test"); err != nil {
			t.Fatal(err)
		}
	}

	shots := screenshotDir(t)
	// Made before the browser starts, so that it is removed only after the browser has stopped.
	downloads := t.TempDir()
	b := chromium(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", filepath.Join(shots, name), len(png))
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(b, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
	login := func(name string) {
		t.Helper()
		step("log in as "+name, chromedp.Navigate(srv.URL+"/login?next=/archive"), chromedp.WaitVisible(chromedp.CSS("#user")),
			chromedp.SendKeys(chromedp.CSS("#user"), name), chromedp.SendKeys(chromedp.CSS("#password"), name+"'s long password"),
			chromedp.Click(chromedp.CSS("#login-account")), chromedp.WaitVisible(chromedp.CSS("#objects")))
	}
	row := func(key string) string { return fmt.Sprintf(`tr[data-key=%q]`, key) }

	// A viewer: the Archive page, a download per object, no delete.
	login("vera")
	if count("#nav-archive") != 1 || count("a.download") != 2 || count("button.delete") != 0 || count("#role-note") != 1 {
		t.Fatalf("the viewer's archive page: %d nav links, %d downloads, %d delete buttons", count("#nav-archive"), count("a.download"), count("button.delete"))
	}
	for _, j := range jobs {
		if got, _ := chromedp.Run(b, chromedp.Text(chromedp.CSS(row(*j.S3Key)+" td.md5"))); strings.TrimSpace(got) != *j.MD5Actual {
			t.Fatalf("%s: expected MD5 shown %q, the job's is %s", *j.S3Key, got, *j.MD5Actual)
		}
	}
	shot("archive-viewer.png")

	// Download through the page: the file the browser saves has the job's MD5.
	step("download", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}), chromedp.Click(chromedp.CSS(row(*jobs[0].S3Key)+" a.download")))
	file := filepath.Join(downloads, filepath.Base(*jobs[0].S3Key))
	if got := waitFile(t, ctx, file); got != *jobs[0].MD5Actual {
		t.Fatalf("downloaded %s has md5 %s, the job's is %s", file, got, *jobs[0].MD5Actual)
	}
	step("log out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))

	// An operator: downloads too, and still no delete (that needs an admin), nor accounts.
	login("otto")
	if count("a.download") != 2 || count("button.delete") != 0 || count("#role-note") != 1 || count("#nav-accounts") != 0 {
		t.Fatalf("the operator's archive page: %d downloads, %d delete buttons, %d role notes, %d accounts links",
			count("a.download"), count("button.delete"), count("#role-note"), count("#nav-accounts"))
	}
	shot("archive-operator.png")
	step("log out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))

	// An admin: delete, confirm by typing the key, see who deleted it.
	login("ada")
	if count("button.delete") != 2 {
		t.Fatalf("the admin is offered %d delete buttons, want 2", count("button.delete"))
	}
	shot("archive-admin.png")
	key := *jobs[1].S3Key
	step("delete", chromedp.Click(chromedp.CSS(row(key)+" button.delete")), chromedp.WaitVisible(chromedp.CSS("#confirm-key")))
	if got, _ := chromedp.Run(b, chromedp.Text(chromedp.CSS("#confirm-key"))); strings.TrimSpace(got) != key {
		t.Fatalf("the confirmation names %q, want %s", got, key)
	}
	shot("archive-confirm.png")
	step("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), key), chromedp.Click(chromedp.CSS("#confirm-delete")),
		chromedp.WaitVisible(chromedp.CSS("#notice")))
	state, err := chromedp.Run(b, chromedp.AttributeValue(chromedp.CSS(row(key)), "data-state"))
	if err != nil || state.Value != archive.StateDeleted {
		t.Fatalf("%s after the deletion: state %q (%v)", key, state.Value, err)
	}
	if got, _ := chromedp.Run(b, chromedp.Text(chromedp.CSS(row(key)+" .deletion"))); !strings.Contains(got, "account:ada") {
		t.Fatalf("the deletion says %q, want account:ada", got)
	}
	if count("a.download") != 1 {
		t.Fatalf("%d downloads offered after the deletion, want 1", count("a.download"))
	}
	shot("archive-deleted.png")
}

// waitFile waits for the browser to finish saving file and returns its MD5.
func waitFile(t *testing.T, ctx context.Context, file string) string {
	t.Helper()
	for {
		if b, err := os.ReadFile(file); err == nil {
			if _, err := os.Stat(file + ".crdownload"); os.IsNotExist(err) {
				s := md5.Sum(b)
				return hex.EncodeToString(s[:])
			}
		}
		select {
		case <-ctx.Done():
			entries, _ := os.ReadDir(filepath.Dir(file))
			t.Fatalf("the browser never saved %s (the folder holds %v)", file, entries)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
