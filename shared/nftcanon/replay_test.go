package nftcanon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/nftcanon/nftlist"
)

// TestReplayDir replays dumps that agent/nft's TestRecordCorpus wrote (NAME.json with
// nft's listing NAME.list) from $FL_REPLAY_DIR and lists every rule whose text differs
// from nft's, matched by handle. It is a tool for offline work on the renderer and runs
// only when the variable is set.
func TestReplayDir(t *testing.T) {
	dir := os.Getenv("FL_REPLAY_DIR")
	if dir == "" {
		t.Skip("set FL_REPLAY_DIR to replay recorded corpus dumps")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	rules, equal := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d Dump
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		lb, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".list")
		if err != nil {
			t.Fatal(err)
		}
		l, err := nftlist.Parse(string(lb))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rs, err := Build(&d)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, lc := range l.Chains {
			got := map[uint64]string{}
			if tb := rs.Table(lc.Family, lc.Table); tb != nil {
				if c := tb.Chain(lc.Name); c != nil {
					for _, r := range c.Rules {
						got[r.Handle] = r.Text
						if r.Undecoded > 0 {
							t.Logf("%s %s undecoded: %s", filepath.Base(f), lc.Key(), r.Text)
						}
					}
				}
			}
			for _, lr := range lc.Rules {
				rules++
				if got[lr.Handle] == lr.Text {
					equal++
					continue
				}
				t.Logf("%s %s #%d\n\tnft:  %s\n\tours: %s", filepath.Base(f), lc.Key(),
					lr.Handle, lr.Text, got[lr.Handle])
			}
		}
	}
	t.Logf("rules %d equal %d (%.2f%%)", rules, equal, 100*float64(equal)/float64(max(rules, 1)))
}
