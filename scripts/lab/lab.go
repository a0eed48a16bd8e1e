// Package lab starts Fenceline on real parts on this machine, for the end-to-end tests,
// the demo and the benchmarks: the three binaries as processes, network namespaces with
// real nftables rulesets changed by the nft CLI, and a real Mosquitto broker. Everything
// listens on loopback; a Lab removes what it created (processes by PID, namespaces) on
// Close.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fenceline/fenceline/internal/freeport"
)

// Lab owns the processes and namespaces it started.
type Lab struct {
	// Root is the repository root; Dir the lab's scratch directory; Bin where the
	// binaries are.
	Root, Dir, Bin string

	mu     sync.Mutex
	procs  []*Proc
	netnss []string
}

// New returns a lab working in dir with binaries in bin.
func New(root, dir, bin string) *Lab { return &Lab{Root: root, Dir: dir, Bin: bin} }

// Build compiles the three binaries into dir.
func Build(root, dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"./agent/cmd/fenceline-agent", "./aggregator/cmd/fenceline-aggregator", "./aggregator/cmd/fencectl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// CheckHost reports why this machine cannot run the lab (not root, tools missing), or nil.
func CheckHost(tools ...string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: network namespaces and nftables")
	}
	for _, tool := range append([]string{"ip", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (run scripts/deps.sh)", tool)
		}
	}
	return nil
}

// Close stops every process (SIGTERM, then SIGKILL) and deletes every namespace.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, nss := l.procs, l.netnss
	l.procs, l.netnss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	var errs []error
	for _, ns := range nss {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %v %s", ns, err, out))
		}
	}
	return errors.Join(errs...)
}

// Logs returns the tail of every process log, for a failed test's report.
func (l *Lab) Logs(lines int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, p := range l.procs {
		fmt.Fprintf(&b, "--- %s (pid %d) ---\n%s\n", p.Name, p.Pid(), p.Tail(lines))
	}
	return b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Netns creates a uniquely named network namespace with loopback up.
func (l *Lab) Netns(prefix string) (string, error) {
	name := prefix + "-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %v %s", name, err, out)
	}
	l.mu.Lock()
	l.netnss = append(l.netnss, name)
	l.mu.Unlock()
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return name, fmt.Errorf("lo up in %s: %v %s", name, err, out)
	}
	return name, nil
}

// Link connects the host to namespace ns with a veth pair and returns the host's and
// the namespace's addresses, a /24 of 198.18.0.0/15 (reserved for benchmarking) chosen at
// random. Deleting the namespace deletes the pair.
func (l *Lab) Link(ns string) (hostAddr, nsAddr string, err error) {
	b := make([]byte, 2)
	rand.Read(b)
	net3 := fmt.Sprintf("198.%d.%d", 18+int(b[0]&1), 1+int(b[1])%254)
	host, peer := "flh"+randHex(3), "flp"+randHex(3)
	hostAddr, nsAddr = net3+".1", net3+".2"
	steps := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns},
		{"addr", "add", hostAddr + "/24", "dev", host},
		{"link", "set", host, "up"},
		{"-n", ns, "addr", "add", nsAddr + "/24", "dev", peer},
		{"-n", ns, "link", "set", peer, "up"},
	}
	for _, st := range steps {
		if out, err := exec.Command("ip", st...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", host).Run()
			return "", "", fmt.Errorf("ip %s: %v %s", strings.Join(st, " "), err, out)
		}
	}
	return hostAddr, nsAddr, nil
}

// Nft runs the nft CLI inside the namespace, as an administrator would.
func Nft(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// FreePort returns a TCP port that is free on 127.0.0.1 right now (freeport.Port).
func FreePort() (int, error) { return freeport.Port() }

// WaitFor polls cond every 20 ms until it holds or timeout passes. The error carries
// cond's last status.
func WaitFor(timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	status := ""
	for {
		var ok bool
		if ok, status = cond(); ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s; last: %s", timeout, what, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitProgress polls cond every 20 ms until it reports done. It gives up only when the
// progress mark cond returns has not changed for stall: a slow machine is waited for, a
// stuck one is not. The error carries cond's last status.
func WaitProgress(stall time.Duration, what string, cond func() (done bool, mark, status string)) error {
	last, since := "", time.Now()
	for {
		done, mark, status := cond()
		if done {
			return nil
		}
		if mark != last {
			last, since = mark, time.Now()
		}
		if time.Since(since) > stall {
			return fmt.Errorf("no progress for %s waiting for %s; last: %s", stall, what, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proc is a process the lab started.
type Proc struct {
	Name string
	lab  *Lab
	bin  string
	args []string
	env  []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Start starts a process with its output in a log file in the lab directory.
func (l *Lab) Start(name string, env []string, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, lab: l, bin: bin, args: args, env: env,
		log: filepath.Join(l.Dir, name+".log")}
	if err := p.start(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func (p *Proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	fmt.Fprintf(f, "### lab: started %s pid %d\n", p.Name, cmd.Process.Pid)
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Restart starts the process again with the same arguments, after it ended (Stop or Kill).
func (p *Proc) Restart() error {
	if !p.Exited() {
		return fmt.Errorf("%s is still running", p.Name)
	}
	return p.start()
}

// Args are the process's command-line arguments.
func (p *Proc) Args() []string { return p.args }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// CPU is the processor time (user and system, all threads) the process has used so far.
// `ip netns exec` replaces itself with the program it runs, so this is the program's.
func (p *Proc) CPU() (time.Duration, error) { return ProcessCPU(p.Pid()) }

// ProcessCPU reads a process's user and system time from /proc/PID/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of the line, in clock ticks; Linux reports
	// them in USER_HZ, which is 100 on every architecture Go supports there.
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process with SIGTERM, and SIGKILL after 10 s.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

// Tail returns the last lines of the process log.
func (p *Proc) Tail(lines int) string {
	b, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Mosquitto starts a real Mosquitto broker without persistence on a free loopback port
// and returns its URL.
func (l *Lab) Mosquitto() (string, *Proc, error) {
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	return l.MosquittoIn("", "127.0.0.1", port)
}

// MosquittoIn starts Mosquitto inside namespace ns ("" for the host's) listening on
// host:port, and returns its URL.
func (l *Lab) MosquittoIn(ns, host string, port int) (string, *Proc, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", nil, errors.New("needs mosquitto (run scripts/deps.sh)")
	}
	conf := filepath.Join(l.Dir, fmt.Sprintf("mosquitto-%d.conf", port))
	err = os.WriteFile(conf, []byte(fmt.Sprintf(
		"listener %d %s\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n",
		port, host)), 0o600)
	if err != nil {
		return "", nil, err
	}
	args := []string{"-c", conf}
	if ns != "" {
		args = append([]string{"netns", "exec", ns, bin}, args...)
		bin = "ip"
	}
	p, err := l.Start(fmt.Sprintf("mosquitto-%d", port), nil, bin, args...)
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	return "tcp://" + addr, p, WaitListening(addr, 10*time.Second)
}

// WaitListening waits until something accepts TCP connections on addr.
func WaitListening(addr string, timeout time.Duration) error {
	return WaitFor(timeout, addr+" to listen", func() (bool, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
}

// Aggregator is a running fenceline-aggregator.
type Aggregator struct {
	*Proc
	lab     *Lab
	API     string
	Token   string
	DataDir string
}

// Aggregator starts fenceline-aggregator with the example config on free loopback ports,
// using brokerURL, or its embedded broker when brokerURL is empty.
func (l *Lab) Aggregator(name, brokerURL string) (*Aggregator, error) {
	// A port found free can still be taken before the aggregator binds it; try again on
	// other ports then.
	for attempt := 1; ; attempt++ {
		a, err := l.aggregator(name, brokerURL)
		if err == nil || attempt == 3 || a == nil || !a.Exited() ||
			!strings.Contains(a.Tail(20), "address already in use") {
			return a, err
		}
		os.RemoveAll(a.DataDir)
	}
}

func (l *Lab) aggregator(name, brokerURL string) (*Aggregator, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	dataDir := filepath.Join(l.Dir, name)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args := []string{
		"--config", filepath.Join(l.Root, "configs", "aggregator.yaml"),
		"--data-dir", dataDir,
		"--http-listen", httpAddr,
		"--raft-listen", fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	if brokerURL != "" {
		args = append(args, "--broker-url", brokerURL)
	} else {
		args = append(args, "--embedded-broker-listen", fmt.Sprintf("127.0.0.1:%d", ports[2]))
	}
	p, err := l.Start(name, nil, filepath.Join(l.Bin, "fenceline-aggregator"), args...)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{Proc: p, lab: l, API: "http://" + httpAddr, DataDir: dataDir}
	err = WaitFor(30*time.Second, name+" /healthz", func() (bool, string) {
		if a.Exited() {
			return true, "" // no use waiting
		}
		resp, err := http.Get(a.API + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if err == nil && a.Exited() {
		err = fmt.Errorf("%s exited at start:\n%s", name, a.Tail(10))
	}
	if err != nil {
		return a, err
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	a.Token = strings.TrimSpace(string(tok))
	return a, nil
}

// WaitHealthy waits until the aggregator answers /healthz with 200 (it has a leader).
func (a *Aggregator) WaitHealthy(timeout time.Duration) error {
	return WaitFor(timeout, a.Name+" /healthz", func() (bool, string) {
		if a.Exited() {
			return false, a.Name + " exited"
		}
		resp, err := http.Get(a.API + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// Ctl runs fencectl against the aggregator for tenant and returns its stdout.
func (a *Aggregator) Ctl(tenant string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(a.lab.Bin, "fencectl"), args...)
	cmd.Env = append(os.Environ(), "FENCELINE_SERVER="+a.API, "FENCELINE_TOKEN="+a.Token,
		"FENCELINE_TENANT="+tenant)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("fencectl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// CtlJSON runs a fencectl command with -o json and decodes its output into v.
func (a *Aggregator) CtlJSON(tenant string, v any, args ...string) error {
	out, err := a.Ctl(tenant, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("fencectl %s: decode: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Get fetches an API path with the admin token and decodes the JSON answer into v.
func (a *Aggregator) Get(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, a.API+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Agent enrolls device for tenant with a token from `fencectl enroll` and starts an
// agent watching the namespace. Extra arguments go to `fenceline-agent run`.
func (l *Lab) Agent(a *Aggregator, tenant, device, ns string, extra ...string) (*Proc, error) {
	return l.AgentWithEnv(a, tenant, device, ns, nil, extra...)
}

// AgentWithEnv is Agent with extra environment (FENCELINE_… settings).
func (l *Lab) AgentWithEnv(a *Aggregator, tenant, device, ns string, env []string,
	extra ...string) (*Proc, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := a.CtlJSON(tenant, &tok, "enroll", "--device", device); err != nil {
		return nil, err
	}
	if tok.Token == "" {
		return nil, errors.New("fencectl enroll returned no token")
	}
	args := append([]string{"run",
		"--config", filepath.Join(l.Root, "configs", "agent.yaml"),
		"--state-dir", filepath.Join(l.Dir, "agent-"+device),
		"--aggregator", a.API,
		"--token", tok.Token,
		"--netns", ns,
	}, extra...)
	return l.Start("agent-"+device, env, filepath.Join(l.Bin, "fenceline-agent"), args...)
}
