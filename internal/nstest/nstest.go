// Package nstest gives kernel tests their network namespaces: a check that they can run
// here, a uniquely named namespace deleted when the test ends whatever its outcome, and
// commands run inside it. Tests change nftables only through the nft command in their
// own namespace.
package nstest

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

// RequireKernel skips the test where kernel tests cannot run: without root, nft or ip.
func RequireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("kernel test: %s not installed (scripts/deps.sh installs it)", bin)
		}
	}
}

// RequireCorpus skips the test when the shared nftables corpus is not at dir (relative
// to the test's package, checked out beside the repository); it returns dir.
func RequireCorpus(t testing.TB, dir string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "INDEX.md")); err != nil {
		t.Skipf("corpus not found at %s (checked out beside the repository?)", dir)
	}
	return dir
}

var tagRE = regexp.MustCompile(`[^a-z0-9]+`)

// New creates a network namespace named fl-TAG-RANDOM (TAG from tag, or from the test's
// name when tag is empty) and deletes it when the test ends.
func New(t testing.TB, tag string) string {
	t.Helper()
	if tag == "" {
		tag = t.Name()
	}
	tag = strings.Trim(tagRE.ReplaceAllString(strings.ToLower(tag), "-"), "-")
	if len(tag) > 20 {
		tag = strings.Trim(tag[len(tag)-20:], "-")
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("fl-%s-%s", tag, hex.EncodeToString(rnd[:]))
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

// Run runs a command inside the namespace and returns its standard output; the error
// carries its standard error.
func Run(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err,
			strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// AddInterfaces creates placeholder interfaces a ruleset refers to: dummy devices, or
// ifb devices on kernels built without the dummy driver.
func AddInterfaces(t testing.TB, ns string, names []string) {
	t.Helper()
	for _, n := range names {
		if _, err := Run(ns, "ip", "link", "add", n, "type", "dummy"); err == nil {
			continue
		}
		if _, err := Run(ns, "ip", "link", "add", n, "type", "ifb"); err != nil {
			t.Fatal(err)
		}
	}
}

var ifacesRE = regexp.MustCompile(`^\| ([^ |]+\.nft) \|.*ifaces created: ([^)]*)\)`)

// CorpusInterfaces reads the corpus's INDEX.md for the interfaces each curated file
// needs, by file name.
func CorpusInterfaces(t testing.TB, dir string) map[string][]string {
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
