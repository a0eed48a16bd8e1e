// Package e2e runs Fenceline end to end on real parts: the three binaries as processes,
// a real nftables ruleset in a network namespace the test creates, changed with the nft
// CLI, and a real Mosquitto broker or the aggregator's embedded one.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

var (
	repoRoot string // the repository's top directory
	binDir   string // binaries built once for the package
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "fenceline-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if err := lab.Build(repoRoot, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// newLab returns a lab for the test, or skips when this machine cannot run one. The lab
// stops its processes and deletes its namespaces when the test ends, pass or fail.
func newLab(t *testing.T, tools ...string) *lab.Lab {
	t.Helper()
	if err := lab.CheckHost(tools...); err != nil {
		t.Skip(err)
	}
	l := lab.New(repoRoot, t.TempDir(), binDir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Logs(80))
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// corpusFile returns a path in the shared corpus, or skips the test when it is absent.
func corpusFile(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(repoRoot, "..", "shared", "corpus", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus file %s not present: %v", p, err)
	}
	return p
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := lab.Nft(ns, args...)
	check(t, err)
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	check(t, lab.WaitFor(timeout, what, cond))
}
