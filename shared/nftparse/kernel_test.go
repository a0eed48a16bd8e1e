package nftparse

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// corpusDir is the curated nftables corpus, relative to this package's directory.
const corpusDir = "../../../shared/corpus/nft"

// requireKernel skips kernel tests where they cannot run.
func requireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("kernel test: %s not installed", bin)
		}
	}
}

func requireCorpus(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(corpusDir, "INDEX.md")); err != nil {
		t.Skipf("corpus not found at %s (checked out beside the repository?)", corpusDir)
	}
	return corpusDir
}

// newNS creates a network namespace named fl-nftparse-<random> and deletes it when the
// test ends.
func newNS(t testing.TB) string {
	t.Helper()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "fl-nftparse-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// inNS runs a command in the namespace.
func inNS(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err,
			strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

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
