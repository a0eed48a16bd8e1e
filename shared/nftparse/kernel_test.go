package nftparse

import (
	"testing"

	"github.com/fenceline/fenceline/internal/nstest"
)

// corpusDir is the curated nftables corpus, relative to this package's directory.
const corpusDir = "../../../shared/corpus/nft"

func requireKernel(t testing.TB) { t.Helper(); nstest.RequireKernel(t) }

func requireCorpus(t testing.TB) string { t.Helper(); return nstest.RequireCorpus(t, corpusDir) }

func newNS(t testing.TB) string { t.Helper(); return nstest.New(t, "nftparse") }

func inNS(ns string, args ...string) (string, error) { return nstest.Run(ns, args...) }
