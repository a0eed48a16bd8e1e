package nft

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/internal/nstest"
)

// corpusDir is the curated nftables corpus, relative to this package's directory.
const corpusDir = "../../../shared/corpus/nft"

// requireKernel skips kernel-tier tests where they cannot run.
func requireKernel(t testing.TB) { t.Helper(); nstest.RequireKernel(t) }

// requireCorpus skips when the shared corpus is not checked out next to the repository.
func requireCorpus(t testing.TB) string { t.Helper(); return nstest.RequireCorpus(t, corpusDir) }

// newNS creates a uniquely named network namespace, deleted when the test ends.
func newNS(t testing.TB) string { t.Helper(); return nstest.New(t, "") }

// inNS runs a command inside the namespace and returns its standard output.
func inNS(ns string, args ...string) (string, error) { return nstest.Run(ns, args...) }

func mustNS(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// addDummies creates placeholder interfaces in the namespace: dummy devices, or ifb
// devices on kernels built without the dummy driver.
func addDummies(t testing.TB, ns string, names []string) {
	t.Helper()
	for _, n := range names {
		if _, err := inNS(ns, "ip", "link", "add", n, "type", "dummy"); err == nil {
			continue
		}
		mustNS(t, ns, "ip", "link", "add", n, "type", "ifb")
	}
}

var ifacesRE = regexp.MustCompile(`^\| ([^ |]+\.nft) \|.*ifaces created: ([^)]*)\)`)

// corpusIfaces reads INDEX.md for the interfaces each curated file needs.
func corpusIfaces(t testing.TB, dir string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "INDEX.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if s := ifacesRE.FindStringSubmatch(line); s != nil {
			m[s[1]] = strings.Split(s[2], ",")
		}
	}
	return m
}

// loadFile creates a namespace with the given interfaces and loads an nft file into it.
func loadFile(t testing.TB, file string, ifaces []string) string {
	t.Helper()
	ns := newNS(t)
	addDummies(t, ns, ifaces)
	mustNS(t, ns, "nft", "-f", file)
	return ns
}
