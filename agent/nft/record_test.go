package nft

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/internal/nstest"
)

// TestRecordCorpus records, for every curated corpus file, the raw dump and nft's own
// listing into $FL_RECORD_DIR, for offline work on the canonicalizer. It runs only when
// that variable is set.
func TestRecordCorpus(t *testing.T) {
	out := os.Getenv("FL_RECORD_DIR")
	if out == "" {
		t.Skip("set FL_RECORD_DIR to record corpus dumps")
	}
	requireKernel(t)
	dir := requireCorpus(t)
	if sub := os.Getenv("FL_RECORD_SUBDIR"); sub != "" {
		dir = filepath.Join(dir, sub)
	}
	ifaces := nstest.CorpusInterfaces(t, requireCorpus(t))
	files, _ := filepath.Glob(filepath.Join(dir, "*.nft"))
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "BIG-") && os.Getenv("FL_RECORD_BIG") == "" {
			continue
		}
		t.Run(base, func(t *testing.T) {
			ns := newNS(t)
			nstest.AddInterfaces(t, ns, ifaces[base])
			if _, err := inNS(ns, "nft", "-f", f); err != nil {
				t.Skipf("does not load: %v", err)
			}
			r, err := Open(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			d, _, err := r.ReadDump()
			if err != nil {
				t.Fatal(err)
			}
			list := mustNS(t, ns, "nft", "-a", "-s", "list", "ruleset")
			b, _ := json.Marshal(d)
			name := strings.TrimSuffix(base, ".nft")
			os.WriteFile(filepath.Join(out, name+".json"), b, 0o644)
			os.WriteFile(filepath.Join(out, name+".list"), []byte(list), 0o644)
		})
	}
}

// TestRecordTestdata re-records shared/nftcanon/testdata from real namespaces: for each
// hand-written ruleset in testdata/src, the raw dump and nft's own listing of it. (The
// corpus stays outside the repository; the kernel tier tests it in place.) Run with
// FL_RECORD_TESTDATA=1.
func TestRecordTestdata(t *testing.T) {
	if os.Getenv("FL_RECORD_TESTDATA") == "" {
		t.Skip("set FL_RECORD_TESTDATA=1 to re-record shared/nftcanon/testdata")
	}
	requireKernel(t)
	const out = "../../shared/nftcanon/testdata"
	files, _ := filepath.Glob(filepath.Join(out, "src", "*.nft"))
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(base, func(t *testing.T) {
			ns := loadFile(t, f, nil)
			r, err := Open(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			d, _, err := r.ReadDump()
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(d, "", " ")
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(base, ".nft")
			list := mustNS(t, ns, "nft", "-a", "-s", "list", "ruleset")
			if err := os.WriteFile(filepath.Join(out, name+".json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, name+".list"), []byte(list), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
