package ui

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kafkasync/kafkasync/internal/audit"
)

func funcs(o Options) template.FuncMap {
	return template.FuncMap{
		"bytes": func(n any) string {
			switch v := n.(type) {
			case *int64:
				if v == nil {
					return "—"
				}
				return humanBytes(*v)
			case int64:
				return humanBytes(v)
			}
			return fmt.Sprint(n)
		},
		"rate": func(f any) string {
			switch v := f.(type) {
			case *float64:
				if v == nil {
					return "—"
				}
				return humanRate(*v)
			case float64:
				return humanRate(v)
			}
			return "—"
		},
		"dur":       func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"time":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"ptime":     func(t *time.Time) string { return ptime(t) },
		"lower":     strings.ToLower,
		"human":     func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", " ") },
		"deref":     func(s any) string { return derefAny(s) },
		"wfURL":     func(wf, run string) string { return workflowURL(o.TemporalUI, o.Namespace, wf, run) },
		"statuses":  func() []string { return audit.Statuses },
		"pct":       func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"ratio":     func(f *float64) string { return ratio(f) },
		"text":      printable,
		"dlqStates": func() []string { return []string{audit.DLQOpen, audit.DLQReplayed, audit.DLQDiscarded} },
		"final":     terminal,
		"label":     func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") },
		"roles":     func() []string { return []string{audit.RoleViewer, audit.RoleOperator, audit.RoleAdmin} },
		"liveKeys":  liveKeys,
		"window":    window,
		"pageURL":   pageURL,
		"objectURL": func(bucket, key string) string {
			return "/api/v1/objects/content?" + url.Values{"bucket": {bucket}, "key": {key}}.Encode()
		},
	}
}

// pageURL links path with an encoded query (a page's Next), which a template would otherwise
// escape whole, "=" and "&" included. Re-encoding it keeps it a query and nothing else.
func pageURL(path, query string) template.URL {
	v, err := url.ParseQuery(query)
	if err != nil {
		return template.URL(path)
	}
	return template.URL(path + "?" + v.Encode())
}

// window names a duration of whole hours the way people say it: 1 hour, 24 hours, 7 days.
func window(s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil || d%time.Hour != 0:
		return s
	case d%(24*time.Hour) == 0 && d > 24*time.Hour:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d == time.Hour:
		return "hour"
	default:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
}

// liveKeys counts the keys not revoked.
func liveKeys(keys []audit.APIKey) int {
	n := 0
	for _, k := range keys {
		if k.RevokedAt == nil {
			n++
		}
	}
	return n
}

func ptime(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func ratio(f *float64) string {
	if f == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", *f*100)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefAny(v any) string {
	switch x := v.(type) {
	case *string:
		return deref(x)
	case *int:
		if x != nil {
			return fmt.Sprint(*x)
		}
	case *int32:
		if x != nil {
			return fmt.Sprint(*x)
		}
	case *int64:
		if x != nil {
			return fmt.Sprint(*x)
		}
	case string:
		return x
	}
	return ""
}

// printable shows message bytes as text when they are UTF-8, else as hex; long values are cut.
func printable(b []byte) string {
	const max = 2048
	cut := ""
	if len(b) > max {
		b, cut = b[:max], fmt.Sprintf("… (%d bytes more)", len(b)-max)
	}
	if utf8.Valid(b) {
		return string(b) + cut
	}
	return fmt.Sprintf("0x%x", b) + cut
}

// workflowURL links one workflow run in the Temporal Web UI.
func workflowURL(base, ns, wf, run string) string {
	if base == "" || wf == "" {
		return ""
	}
	if ns == "" {
		ns = "default"
	}
	u := fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(base, "/"), url.PathEscape(ns), url.PathEscape(wf))
	if run != "" {
		u += "/" + url.PathEscape(run)
	}
	return u + "/history"
}

func humanBytes(n int64) string {
	v := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if v < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= 1024
	}
	return ""
}

func humanRate(f float64) string {
	if f <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MB/s", f/1e6)
}
