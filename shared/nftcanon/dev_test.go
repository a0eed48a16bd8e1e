package nftcanon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/nftcanon/nftlist"
)

func TestDevCache(t *testing.T) {
	dir := os.Getenv("FL_DEV_CACHE")
	if dir == "" {
		t.Skip("FL_DEV_CACHE not set")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	total, equal := 0, 0
	var bad []string
	for _, f := range files {
		if strings.Contains(f, "BIG-") && os.Getenv("FL_DEV_BIG") == "" {
			continue
		}
		b, _ := os.ReadFile(f)
		var d Dump
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		lb, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".list")
		l, err := nftlist.Parse(string(lb))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Build(&d)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		got := map[uint64]string{}
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					got[uint64(len(tb.Family))<<56|r.Handle] = r.Text
					got[r.Handle|1<<63] = tb.Family + " " + tb.Name + " " + c.Name
				}
			}
		}
		for _, c := range l.Chains {
			tb := rs.Table(c.Family, c.Table)
			var mc []string
			if tb != nil {
				if ch := tb.Chain(c.Name); ch != nil {
					for _, r := range ch.Rules {
						mc = append(mc, r.Text)
					}
				}
			}
			for i, r := range c.Rules {
				total++
				g := ""
				if i < len(mc) {
					g = mc[i]
				}
				if g == r.Text {
					equal++
				} else {
					bad = append(bad, fmt.Sprintf("%s [%s %s %s]\n   want: %s\n   got:  %s",
						filepath.Base(f), c.Family, c.Table, c.Name, r.Text, g))
				}
			}
		}
	}
	sort.Strings(bad)
	if n := os.Getenv("FL_DEV_SHOW"); n != "" {
		for i, s := range bad {
			if i >= 400 {
				break
			}
			fmt.Println(s)
		}
	}
	fmt.Printf("rules %d equal %d (%.1f%%)\n", total, equal, 100*float64(equal)/float64(max(total, 1)))
}
