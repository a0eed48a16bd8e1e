package nft

import (
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

// loadFile creates a namespace with the given interfaces and loads an nft file into it.
func loadFile(t testing.TB, file string, ifaces []string) string {
	t.Helper()
	ns := newNS(t)
	nstest.AddInterfaces(t, ns, ifaces)
	mustNS(t, ns, "nft", "-f", file)
	return ns
}
