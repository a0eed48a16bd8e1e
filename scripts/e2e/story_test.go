package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

// The ruleset every story starts from: a real router configuration from the corpus.
const storyRuleset = "nft/user-linux-wireless-router.nft"

type historyEntry struct {
	Seq     string `json:"seq"`
	Kind    string `json:"kind"`
	Changes []struct {
		Kind  string `json:"kind"`
		Chain string `json:"chain"`
		Rule  string `json:"rule"`
	} `json:"changes"`
}

type deviation struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Device string `json:"device"`
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Rule   string `json:"rule"`
	Change string `json:"change"`
	State  string `json:"state"`
}

type changeRequest struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func history(t *testing.T, a *lab.Aggregator, tenant, device string) []historyEntry {
	var h []historyEntry
	check(t, a.CtlJSON(tenant, &h, "device", "history", device))
	return h
}

func changeEvents(h []historyEntry) []historyEntry {
	var out []historyEntry
	for _, e := range h {
		if e.Kind == "change" || e.Kind == "reconcile" {
			out = append(out, e)
		}
	}
	return out
}

func deviations(t *testing.T, a *lab.Aggregator, tenant, device string) []deviation {
	var d []deviation
	check(t, a.CtlJSON(tenant, &d, "deviations", "--device", device))
	return d
}

// TestStoryMosquitto tells the whole story against a real Mosquitto broker.
func TestStoryMosquitto(t *testing.T) {
	l := newLab(t, "mosquitto")
	url, _, err := l.Mosquitto()
	check(t, err)
	story(t, l, url)
}

// TestStoryEmbeddedBroker tells it against the aggregator's embedded broker.
func TestStoryEmbeddedBroker(t *testing.T) {
	story(t, newLab(t), "")
}

func story(t *testing.T, l *lab.Lab, brokerURL string) {
	const tenant, device = "acme", "fw-branch-1"
	file := corpusFile(t, storyRuleset)
	ns, err := l.Netns("fl-e2e")
	check(t, err)
	nft(t, ns, "-f", file)

	a, err := l.Aggregator("aggregator", brokerURL)
	check(t, err)
	_, err = l.Agent(a, tenant, device, ns, "--log-level", "debug")
	check(t, err)

	waitFor(t, 30*time.Second, "baseline in device history", func() (bool, string) {
		var h []historyEntry
		if err := a.CtlJSON(tenant, &h, "device", "history", device); err != nil {
			return false, err.Error() // not enrolled yet
		}
		return len(h) > 0 && h[0].Kind == "baseline", fmt.Sprintf("%d events", len(h))
	})

	// A flush-and-reload of the unchanged ruleset is not a change. To know that no event
	// is coming, make a marker change afterwards and check it is the first change seen.
	reload := filepath.Join(t.TempDir(), "reload.nft")
	os.WriteFile(reload, []byte(fmt.Sprintf("flush ruleset\ninclude %q\n", file)), 0o600)
	nft(t, ns, "-f", reload)
	nft(t, ns, "add", "table", "inet", "fl_marker")
	waitFor(t, 10*time.Second, "marker change", func() (bool, string) {
		ch := changeEvents(history(t, a, tenant, device))
		return len(ch) > 0, fmt.Sprintf("%d change events", len(ch))
	})
	ch := changeEvents(history(t, a, tenant, device))
	if len(ch) != 1 || len(ch[0].Changes) != 1 || ch[0].Changes[0].Kind != "table_added" {
		t.Fatalf("after reload + marker: want exactly the marker's table_added event, got %+v", ch)
	}
	nft(t, ns, "delete", "table", "inet", "fl_marker")
	waitFor(t, 10*time.Second, "marker removal", func() (bool, string) {
		ch := changeEvents(history(t, a, tenant, device))
		return len(ch) == 2, fmt.Sprintf("%d change events", len(ch))
	})
	// The marker table's add and delete are unauthorized too; count from here.
	before := len(deviations(t, a, tenant, device))

	// An approved CR, implemented inside its window: no deviation.
	const chain, planned = "ip filter TCP", `iifname "br0" tcp dport 443 counter accept`
	now := time.Now().UTC()
	var cr changeRequest
	check(t, a.CtlJSON(tenant, &cr, "cr", "create", "--device", device, "--title", "Open HTTPS to the LAN",
		"--requester", "alice", "--window-start", now.Add(-time.Minute).Format(time.RFC3339),
		"--window-end", now.Add(time.Hour).Format(time.RFC3339), "--add", chain+"|"+planned))
	if cr.ID == "" {
		t.Fatal("cr create returned no id")
	}
	check(t, a.CtlJSON(tenant, &cr, "cr", "approve", cr.ID, "--approver", "bob"))
	if cr.State != "approved" {
		t.Fatalf("CR state after approve = %q, want approved", cr.State)
	}
	nft(t, ns, "add", "rule", "ip", "filter", "TCP", `iifname "br0" tcp dport 443 counter accept`)
	waitFor(t, 10*time.Second, "CR implemented", func() (bool, string) {
		check(t, a.CtlJSON(tenant, &cr, "cr", "show", cr.ID))
		return cr.State == "implemented", cr.State
	})
	if d := deviations(t, a, tenant, device); len(d) != before {
		t.Fatalf("approved change raised deviations: %+v", d[before:])
	}

	// Changes made "while in the console": two rules added, one existing rule deleted.
	nft(t, ns, "add", "rule", "ip", "filter", "input", "tcp", "dport", "23", "accept")
	nft(t, ns, "insert", "rule", "ip", "filter", "forward", `iifname "wan0" accept`)
	handle := ruleHandle(t, ns, "ip filter input", "ct state invalid counter")
	nft(t, ns, "delete", "rule", "ip", "filter", "input", "handle", handle)

	want := []deviation{
		{Kind: "unauthorized", Device: device, Family: "ip", Table: "filter", Chain: "input",
			Rule: "tcp dport 23 accept", Change: "rule_added"},
		{Kind: "unauthorized", Device: device, Family: "ip", Table: "filter", Chain: "forward",
			Rule: `iifname "wan0" accept`, Change: "rule_added"},
		{Kind: "unauthorized", Device: device, Family: "ip", Table: "filter", Chain: "input",
			Rule: "ct state invalid counter drop", Change: "rule_removed"},
	}
	var got []deviation
	waitFor(t, 10*time.Second, "three unauthorized deviations", func() (bool, string) {
		got = deviations(t, a, tenant, device)[before:]
		return len(got) >= len(want), fmt.Sprintf("%d new deviations", len(got))
	})
	if len(got) != len(want) {
		t.Fatalf("want %d deviations, got %d: %+v", len(want), len(got), got)
	}
	for _, w := range want {
		if !containsDeviation(got, w) {
			t.Errorf("missing deviation %+v in %+v", w, got)
		}
	}
	check(t, a.CtlJSON(tenant, &cr, "cr", "show", cr.ID))
	if cr.State != "implemented" {
		t.Errorf("CR state = %q after unrelated changes, want implemented", cr.State)
	}
}

func containsDeviation(ds []deviation, w deviation) bool {
	for _, d := range ds {
		if d.Kind == w.Kind && d.Device == w.Device && d.Family == w.Family && d.Table == w.Table &&
			d.Chain == w.Chain && d.Rule == w.Rule && d.Change == w.Change && d.State == "open" {
			return true
		}
	}
	return false
}

var handleRE = regexp.MustCompile(`# handle (\d+)$`)

// ruleHandle finds the handle of the first rule in chain ("family table chain") whose
// listing starts with prefix, as an administrator would with `nft -a list chain`.
func ruleHandle(t *testing.T, ns, chain, prefix string) string {
	t.Helper()
	out := nft(t, ns, append([]string{"-a", "list", "chain"}, strings.Fields(chain)...)...)
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, prefix) {
			if m := handleRE.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no rule starting with %q in %s:\n%s", prefix, chain, out)
	return ""
}
