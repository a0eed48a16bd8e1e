// Command nftread measures the agent's cost of reading nftables (method in
// ../README.md, "nftables read"): read + canonicalize + hash of a big generated ruleset
// against nft's own listings of the same ruleset in the same run, the peak RSS of a
// process doing that read, and the idle CPU and memory of a real agent watching a
// ruleset.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fenceline/fenceline/agent"
	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/nftcanon"
	"github.com/fenceline/fenceline/shared/ruleset"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		err = child(os.Args[2])
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftread:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "read", "read: read+canonicalize+hash against nft; idle: a real "+
		"agent's CPU and memory while it watches")
	rules := flag.Int("rules", 100000, "rules in the generated ruleset")
	chains := flag.Int("chains", 1, "chains the rules are spread over (read mode)")
	rounds := flag.Int("n", 3, "rounds (read mode); each measures every reader once")
	idle := flag.Duration("idle", 60*time.Second, "idle window (idle mode)")
	flag.Parse()

	if err := lab.CheckHost("python3", "nsenter"); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fenceline-bench-nft-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l := lab.New(root, dir, dir)
	defer l.Close()
	ns, err := l.Netns("fl-bench-nft")
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "ruleset.nft")
	if err := generate(root, file, *rules, *chains); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := lab.Nft(ns, "-f", file); err != nil {
		return err
	}
	fmt.Printf("ruleset: %d rules in %d chain(s) (gen_huge_flat.py --mixed), loaded by nft -f in %v\n",
		*rules, *chains, time.Since(t0).Round(time.Millisecond))
	switch *mode {
	case "read":
		return measureRead(ns, *rounds)
	case "idle":
		if err := lab.Build(root, dir); err != nil {
			return err
		}
		return measureIdle(l, root, ns, *idle)
	}
	return fmt.Errorf("unknown mode %q", *mode)
}

var wideGroup = regexp.MustCompile(`2001:db8:([0-9a-f]{1,4})([0-9a-f]{4})::/48`)

// generate writes a ruleset of n mixed rules (the corpus generator's mix), spread over
// chains chains of equal size.
func generate(root, file string, n, chains int) error {
	gen := filepath.Join(root, "..", "shared", "corpus", "nft", "generators", "gen_huge_flat.py")
	out, err := exec.Command("python3", gen, strconv.Itoa(n), "--mixed").Output()
	if err != nil {
		return fmt.Errorf("%s: %w", gen, err)
	}
	// The generator writes the i-th IPv6 prefix as 2001:db8:<i in hex>::/48, which is no
	// address past 65,535 rules: split such a group into two.
	out = wideGroup.ReplaceAll(out, []byte("2001:db8:$1:$2::/64"))
	if chains <= 1 {
		return os.WriteFile(file, out, 0o644)
	}
	per := (n + chains - 1) / chains
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(out))
	i := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "add chain inet test c "):
			for c := range chains {
				fmt.Fprintf(&b, "add chain inet test c%d\n", c)
			}
			b.WriteString(line + "\n")
			for c := range chains {
				fmt.Fprintf(&b, "add rule inet test c jump c%d\n", c)
			}
		case strings.HasPrefix(line, "add rule inet test c "):
			fmt.Fprintf(&b, "add rule inet test c%d %s\n", i/per,
				strings.TrimPrefix(line, "add rule inet test c "))
			i++
		default:
			b.WriteString(line + "\n")
		}
	}
	return os.WriteFile(file, b.Bytes(), 0o644)
}

// childResult is what one read in a fresh process measured.
type childResult struct {
	// ReadMS is the netlink dump (GETGEN, all objects, GETGEN) with the canonical model,
	// which is built as the dump arrives; BuildMS is 0 since.
	ReadMS   float64 `json:"read_ms"`
	BuildMS  float64 `json:"build_ms"`
	HashMS   float64 `json:"hash_ms"` // ruleset digest
	TotalMS  float64 `json:"total_ms"`
	Rules    int     `json:"rules"`
	UserMS   float64 `json:"user_ms"`      // CPU time of the process, in user space
	SysMS    float64 `json:"sys_ms"`       // and in the kernel (the netlink dumps run there)
	PeakRSS  int     `json:"peak_rss_kib"` // VmHWM
	HeapPeak uint64  `json:"-"`
	// Again is a second read by the same process (the agent's backstop re-read).
	Again *childResult `json:"again,omitempty"`
}

// child reads the namespace once, as the agent does, and prints what it measured.
func child(ns string) error {
	r, err := nft.Open(ns)
	if err != nil {
		return err
	}
	defer r.Close()
	var st *nftcanon.State // as the agent's tracker holds it
	cpu := func() (user, sys float64, err error) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, 0, err
		}
		return ms(time.Duration(ru.Utime.Nano())), ms(time.Duration(ru.Stime.Nano())), nil
	}
	var res childResult
	// The first read is the agent's at start; the second, by the same reader and cache,
	// is its backstop re-read of an unchanged ruleset.
	for i := range 2 {
		u0, s0, err := cpu()
		if err != nil {
			return err
		}
		// ReadState renders rules as their dump arrives: the model is ready when the
		// read ends, and the read's time includes the model's.
		t0 := time.Now()
		var next *nftcanon.State
		var rs *ruleset.Ruleset
		agent.WithReadGC(func() { next, rs, _, err = r.ReadState(st) }) // as the agent reads
		if err != nil {
			return err
		}
		st = next
		t1 := time.Now()
		t2 := t1
		sum := rs.Digest()
		t3 := time.Now()
		if sum.IsZero() {
			return errors.New("no digest")
		}
		u1, s1, err := cpu()
		if err != nil {
			return err
		}
		if i == 0 {
			res = childResult{ReadMS: ms(t1.Sub(t0)), BuildMS: ms(t2.Sub(t1)), HashMS: ms(t3.Sub(t2)),
				TotalMS: ms(t3.Sub(t0)), Rules: rs.RuleCount(), PeakRSS: status(os.Getpid(), "VmHWM"),
				UserMS: u1 - u0, SysMS: s1 - s0}
			continue
		}
		res.Again = &childResult{ReadMS: ms(t1.Sub(t0)), BuildMS: ms(t2.Sub(t1)),
			HashMS: ms(t3.Sub(t2)), TotalMS: ms(t3.Sub(t0)), Rules: rs.RuleCount(),
			PeakRSS: status(os.Getpid(), "VmHWM"), UserMS: u1 - u0, SysMS: s1 - s0}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// status reads a kB field of /proc/PID/status.
func status(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// measureRead alternates, round by round, the agent's read in a fresh process with
// `nft -s list ruleset`, `nft list ruleset` and `nft -j list ruleset` of the same
// namespace.
func measureRead(ns string, rounds int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type cpu struct{ user, sys time.Duration }
	nftCPU := map[string][]cpu{}
	nftRun := func(args ...string) (time.Duration, error) {
		// nsenter joins only the network namespace, as the agent's reader does; `ip netns
		// exec` would also set up a mount namespace and remount /sys, ~0.3 s on a loaded
		// machine that is not nft's.
		cmd := exec.Command("nsenter", append([]string{"--net=" + filepath.Join(nft.NetnsDir, ns),
			"nft"}, args...)...)
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = nil, &errb // output discarded, as a listing to /dev/null
		t0 := time.Now()
		err := cmd.Run()
		if err != nil {
			return 0, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, errb.String())
		}
		el := time.Since(t0)
		// nsenter execs nft in place: the process's CPU time is nft's.
		key := strings.Join(args, " ")
		nftCPU[key] = append(nftCPU[key], cpu{cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()})
		return el, nil
	}
	var agent []childResult
	refs := map[string][]time.Duration{}
	refNames := []string{"nft -s list ruleset", "nft list ruleset", "nft -j list ruleset"}
	refArgs := [][]string{{"-s", "list", "ruleset"}, {"list", "ruleset"}, {"-j", "list", "ruleset"}}
	for range rounds {
		out, err := exec.Command(self, "-child", ns).Output()
		if err != nil {
			return fmt.Errorf("child: %w", err)
		}
		var res childResult
		if err := json.Unmarshal(out, &res); err != nil {
			return fmt.Errorf("child said %q: %w", out, err)
		}
		agent = append(agent, res)
		for i, name := range refNames {
			d, err := nftRun(refArgs[i]...)
			if err != nil {
				return err
			}
			refs[name] = append(refs[name], d)
		}
	}
	med := func(xs []float64) float64 {
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	pick := func(f func(childResult) float64) float64 {
		var xs []float64
		for _, r := range agent {
			xs = append(xs, f(r))
		}
		return med(xs)
	}
	total := pick(func(r childResult) float64 { return r.TotalMS })
	fmt.Printf("agent read+canonicalize+hash (median of %d, fresh process each): %.0f ms "+
		"(netlink dump with the canonical model %.0f ms, after it %.0f ms, digest %.0f ms), %d rules\n", rounds,
		total, pick(func(r childResult) float64 { return r.ReadMS }),
		pick(func(r childResult) float64 { return r.BuildMS }),
		pick(func(r childResult) float64 { return r.HashMS }), agent[0].Rules)
	fmt.Printf("peak RSS of that process (VmHWM, max of %d): %d KiB\n", rounds,
		slices.MaxFunc(agent, func(a, b childResult) int { return a.PeakRSS - b.PeakRSS }).PeakRSS)
	user := pick(func(r childResult) float64 { return r.UserMS })
	sys := pick(func(r childResult) float64 { return r.SysMS })
	fmt.Printf("agent CPU (median): user %.0f ms, kernel %.0f ms\n", user, sys)
	again := func(f func(childResult) float64) float64 {
		return pick(func(r childResult) float64 { return f(*r.Again) })
	}
	fmt.Printf("agent re-read by the same process (backstop; constant sets and rendered rules "+
		"remembered): %.0f ms (netlink dump with the canonical model %.0f ms, after it %.0f ms, "+
		"digest %.0f ms), "+
		"CPU user %.0f ms, kernel %.0f ms; peak RSS after both reads %d KiB\n",
		again(func(r childResult) float64 { return r.TotalMS }),
		again(func(r childResult) float64 { return r.ReadMS }),
		again(func(r childResult) float64 { return r.BuildMS }),
		again(func(r childResult) float64 { return r.HashMS }),
		again(func(r childResult) float64 { return r.UserMS }),
		again(func(r childResult) float64 { return r.SysMS }),
		slices.MaxFunc(agent, func(a, b childResult) int {
			return a.Again.PeakRSS - b.Again.PeakRSS
		}).Again.PeakRSS)
	for i, name := range refNames {
		var xs, us, ss []float64
		for _, d := range refs[name] {
			xs = append(xs, ms(d))
		}
		for _, c := range nftCPU[strings.Join(refArgs[i], " ")] {
			us = append(us, ms(c.user))
			ss = append(ss, ms(c.sys))
		}
		m, u, k := med(xs), med(us), med(ss)
		fmt.Printf("%-22s median %.0f ms  -> agent/nft = %.2f, re-read/nft = %.2f   (CPU user %.0f "+
			"ms, kernel %.0f ms; agent/nft CPU = %.2f, re-read/nft CPU = %.2f)\n", name, m, total/m,
			again(func(r childResult) float64 { return r.TotalMS })/m, u, k, (user+sys)/(u+k),
			(again(func(r childResult) float64 { return r.UserMS })+
				again(func(r childResult) float64 { return r.SysMS }))/(u+k))
	}
	return nil
}

// measureIdle starts an aggregator and an enrolled agent watching the namespace, waits
// for the baseline, then samples the agent's CPU time over the window.
func measureIdle(l *lab.Lab, root, ns string, window time.Duration) error {
	a, err := l.Aggregator("aggregator", "")
	if err != nil {
		return err
	}
	const tenant, device = "bench", "fw-idle"
	p, err := l.Agent(a, tenant, device, ns, "--log-level", "warn")
	if err != nil {
		return err
	}
	err = lab.WaitFor(5*time.Minute, "baseline", func() (bool, string) {
		var h []any
		if err := a.Get("/v1/tenants/"+tenant+"/devices/"+device+"/events", &h); err != nil {
			return false, err.Error()
		}
		return len(h) > 0, ""
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, l.Logs(30))
	}
	pid := p.Pid()
	c0, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	time.Sleep(window) // the measurement window itself
	c1, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	el := time.Since(t0)
	const clkTck = 100 // USER_HZ on Linux
	cpu := time.Duration(c1-c0) * time.Second / clkTck
	fmt.Printf("agent idle over %v: %v CPU = %.3f%% of one core (utime+stime, 10 ms ticks; "+
		"backstop re-read every 60s, heartbeat every 30s)\n", el.Round(time.Second), cpu,
		100*cpu.Seconds()/el.Seconds())
	fmt.Printf("agent memory: VmRSS %d KiB, peak VmHWM %d KiB (baseline event built and sent)\n",
		status(pid, "VmRSS"), status(pid, "VmHWM"))
	return nil
}

// cpuTicks is utime+stime of a process from /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}
