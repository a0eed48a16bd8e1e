package agent

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/nft"
)

// TestNamespaceGone: an agent whose named namespace is deleted, or deleted and created
// again under the same name, stops with a clear error instead of reading a namespace
// nobody can reach while its heartbeats vouch for it.
func TestNamespaceGone(t *testing.T) {
	requireKernel(t)
	for _, c := range []struct {
		name     string
		recreate bool // at once, before the agent looks again
		want     string
	}{
		{"deleted", false, "was deleted"},
		{"replaced", true, "now names another namespace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := newNS(t, "gone")
			inNS(t, ns, "nft", "add", "table", "inet", "t")
			o := startObserver(t, ns, nil)
			o.waitEvents(t, 1, 10*time.Second) // the baseline
			run(t, "ip", "netns", "del", ns)
			if c.recreate {
				run(t, "ip", "netns", "add", ns)
			}
			select {
			case err := <-o.done:
				o.done <- err // for stop
				if !errors.Is(err, nft.ErrNamespaceGone) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("observe ended with %v, want a namespace that %s", err, c.want)
				}
			case <-time.After(3 * namespaceCheckInterval):
				t.Fatal("the agent went on watching a namespace that is gone")
			}
			if !c.recreate {
				run(t, "ip", "netns", "add", ns) // for the cleanup that deletes it
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
