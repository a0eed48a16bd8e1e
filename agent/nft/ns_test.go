package nft

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

// requireKernel skips kernel-tier tests where they cannot run.
func requireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel tier: needs root to create network namespaces")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("kernel tier: %s not installed", bin)
		}
	}
}

// requireCorpus skips when the shared corpus is not checked out next to the repository.
func requireCorpus(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(corpusDir, "INDEX.md")); err != nil {
		t.Skipf("corpus not found at %s (checked out beside the repository?)", corpusDir)
	}
	return corpusDir
}

var nsTagRE = regexp.MustCompile(`[^a-z0-9]+`)

// newNS creates a uniquely named network namespace and deletes it when the test ends,
// whatever the outcome.
func newNS(t testing.TB) string {
	t.Helper()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	tag := nsTagRE.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(tag) > 20 {
		tag = tag[len(tag)-20:]
	}
	name := fmt.Sprintf("fl-%s-%s", strings.Trim(tag, "-"), hex.EncodeToString(rnd[:]))
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

// inNS runs a command inside the namespace and returns its standard output.
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
