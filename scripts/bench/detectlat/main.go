// Command detectlat measures detection latency: the time from an `nft` command returning
// to the deviation it causes being visible in the aggregator's API. It builds the
// binaries, starts an aggregator (embedded broker) and an agent watching a fresh network
// namespace loaded with a corpus ruleset, then makes N unapproved rule additions one at a
// time and polls the API every millisecond for each one's deviation. See ../README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "detectlat:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 100, "number of changes")
	ruleset := flag.String("ruleset", "../shared/corpus/nft/user-linux-wireless-router.nft",
		"ruleset loaded before measuring (relative to the repository root)")
	broker := flag.String("broker", "embedded", "embedded, or mosquitto")
	flag.Parse()

	if err := lab.CheckHost(); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fenceline-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := lab.Build(root, dir); err != nil {
		return err
	}
	l := lab.New(root, dir, dir)
	defer l.Close()

	ns, err := l.Netns("fl-bench")
	if err != nil {
		return err
	}
	if _, err := lab.Nft(ns, "-f", filepath.Join(root, *ruleset)); err != nil {
		return err
	}
	brokerURL := ""
	if *broker == "mosquitto" {
		if brokerURL, _, err = l.Mosquitto(); err != nil {
			return err
		}
	}
	a, err := l.Aggregator("aggregator", brokerURL)
	if err != nil {
		return err
	}
	const tenant, device = "bench", "fw-bench"
	if _, err := l.Agent(a, tenant, device, ns, "--log-level", "warn"); err != nil {
		return err
	}
	path := "/v1/tenants/" + tenant + "/deviations?device=" + device
	var devs []struct {
		Rule string `json:"rule"`
	}
	// The baseline must be in before the first change is made.
	err = lab.WaitFor(30*time.Second, "baseline", func() (bool, string) {
		var h []any
		if err := a.Get("/v1/tenants/"+tenant+"/devices/"+device+"/events", &h); err != nil {
			return false, err.Error()
		}
		return len(h) > 0, ""
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, l.Logs(30))
	}
	table, chain := "ip filter", "input"
	lat := make([]time.Duration, 0, *n)
	for i := 0; i < *n; i++ {
		port := 20000 + i
		rule := fmt.Sprintf("tcp dport %d drop", port)
		args := []string{"add", "rule"}
		args = append(args, strings.Fields(table)...)
		args = append(args, chain, "tcp", "dport", fmt.Sprint(port), "drop")
		if _, err := lab.Nft(ns, args...); err != nil {
			return err
		}
		t0 := time.Now()
		seen := false
		for !seen {
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("change %d: no deviation after 10s\n%s", i, l.Logs(30))
			}
			devs = devs[:0]
			if err := a.Get(path, &devs); err != nil {
				return err
			}
			for _, d := range devs {
				if d.Rule == rule {
					seen = true
					break
				}
			}
			if !seen {
				time.Sleep(time.Millisecond)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("detection latency, nft command returned → deviation in API, %d changes, broker %s\n",
		len(lat), *broker)
	fmt.Printf("min %v  median %v  p90 %v  p99 %v  max %v\n",
		lat[0].Round(time.Microsecond), q(0.5).Round(time.Microsecond), q(0.9).Round(time.Microsecond),
		q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}
