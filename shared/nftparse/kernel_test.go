package nftparse

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

func requireKernel(t testing.TB) { t.Helper(); nstest.RequireKernel(t) }

func requireCorpus(t testing.TB) string { t.Helper(); return nstest.RequireCorpus(t, corpusDir) }

func newNS(t testing.TB) string { t.Helper(); return nstest.New(t, "nftparse") }

func inNS(ns string, args ...string) (string, error) { return nstest.Run(ns, args...) }

// addIfaces creates placeholder interfaces a ruleset refers to.
func addIfaces(t testing.TB, ns string, names []string) {
	t.Helper()
	for _, n := range names {
		if _, err := inNS(ns, "ip", "link", "add", n, "type", "dummy"); err == nil {
			continue
		}
		if _, err := inNS(ns, "ip", "link", "add", n, "type", "ifb"); err != nil {
			t.Fatal(err)
		}
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
