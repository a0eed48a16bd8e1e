package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Cluster is a lab cluster of aggregators on 127.0.0.11, .12, ... with a real Mosquitto
// on 127.0.0.1:1883, all inside a network namespace of their own so that a test can cut
// a node off with nftables rules in that namespace (never the host's ruleset).
type Cluster struct {
	lab *Lab
	// Netns is the cluster's namespace; Broker the Mosquitto URL inside it; Token the
	// admin token all nodes share.
	Netns, Broker, Token string
	Nodes                []*Node
	// Mosquitto is the broker's process.
	Mosquitto *Proc
	// HTTP reaches the nodes' APIs inside the namespace.
	HTTP *http.Client
	env  []string // ClusterOptions.Env
}

// Node is one aggregator process of a Cluster.
type Node struct {
	*Proc
	ID, IP, API, RaftAddr, DataDir string
	args, env                      []string
}

// ClusterOptions tune a lab cluster.
type ClusterOptions struct {
	// Env is added to every node's environment (FENCELINE_* configuration keys).
	Env []string
	// Bins, when set, names the binary directory of each node (index i for node i+1),
	// instead of the lab's (upgrade tests run nodes of different versions).
	Bins []string
}

// Cluster starts Mosquitto and n aggregators (the first bootstraps, the others join it
// with cluster.join) inside a new network namespace, and waits until all n are members
// and healthy.
func (l *Lab) Cluster(n int, opts ClusterOptions) (*Cluster, error) {
	ns, err := l.Netns("fl-cluster")
	if err != nil {
		return nil, err
	}
	c := &Cluster{lab: l, Netns: ns, Token: randHex(16)}
	c.HTTP = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: NetnsDialer(ns), DisableKeepAlives: true}}
	if err := c.startMosquitto(); err != nil {
		return nil, err
	}
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		nd := &Node{ID: fmt.Sprintf("node-%d", i+1), IP: ip, API: "http://" + ip + ":8443",
			RaftAddr: ip + ":7000", DataDir: filepath.Join(l.Dir, fmt.Sprintf("node-%d", i+1))}
		bin := l.Bin
		if i < len(opts.Bins) {
			bin = opts.Bins[i]
		}
		nd.args = []string{"netns", "exec", ns, filepath.Join(bin, "fenceline-aggregator"),
			"--config", filepath.Join(l.Root, "configs", "aggregator.yaml"),
			"--data-dir", nd.DataDir, "--http-listen", ip + ":8443", "--raft-listen", nd.RaftAddr,
			"--node-id", nd.ID, "--broker-url", c.Broker}
		if i > 0 {
			nd.args = append(nd.args, "--join", c.Nodes[0].API)
		}
		c.env = opts.Env
		nd.env = append([]string{"FENCELINE_HTTP_ADMIN_TOKEN=" + c.Token,
			"FENCELINE_RAFT_HEARTBEAT_TIMEOUT=300ms", "FENCELINE_RAFT_ELECTION_TIMEOUT=300ms",
			"FENCELINE_RAFT_LEADER_LEASE_TIMEOUT=150ms", "FENCELINE_CLUSTER_TICK_INTERVAL=200ms",
		}, opts.Env...)
		if err := c.start(nd); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, nd)
	}
	err = WaitFor(60*time.Second, "all nodes members and healthy", func() (bool, string) {
		for _, nd := range c.Nodes {
			var st ClusterStatus
			if err := c.Get(nd, "/v1/cluster", &st); err != nil {
				return false, nd.ID + ": " + err.Error()
			}
			if len(st.Members) != n || st.Leader.ID == "" {
				return false, fmt.Sprintf("%s sees %d members, leader %q", nd.ID, len(st.Members),
					st.Leader.ID)
			}
		}
		return true, ""
	})
	return c, err
}

func (c *Cluster) startMosquitto() error {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return errors.New("needs mosquitto (run scripts/deps.sh)")
	}
	conf := filepath.Join(c.lab.Dir, "mosquitto-cluster.conf")
	err = os.WriteFile(conf, []byte("listener 1883 127.0.0.1\nallow_anonymous true\n"+
		"persistence false\nset_tcp_nodelay true\nmax_queued_messages 100000\n"), 0o600)
	if err != nil {
		return err
	}
	if c.Mosquitto, err = c.lab.Start("mosquitto", nil, "ip", "netns", "exec", c.Netns, bin,
		"-c", conf); err != nil {
		return err
	}
	c.Broker = "tcp://127.0.0.1:1883"
	dial := NetnsDialer(c.Netns)
	return WaitFor(10*time.Second, "mosquitto to listen", func() (bool, string) {
		conn, err := dial(context.Background(), "tcp", "127.0.0.1:1883")
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
}

func (c *Cluster) start(nd *Node) error {
	p, err := c.lab.Start(nd.ID, nd.env, "ip", nd.args...)
	if err != nil {
		return err
	}
	nd.Proc = p
	return nil
}

// Restart starts a stopped or killed node again on its data directory.
func (c *Cluster) Restart(nd *Node) error {
	if !nd.Exited() {
		return fmt.Errorf("%s is still running", nd.ID)
	}
	if err := c.start(nd); err != nil {
		return err
	}
	return WaitFor(30*time.Second, nd.ID+" healthy", func() (bool, string) {
		var h map[string]string
		err := c.Get(nd, "/healthz", &h)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// ClusterStatus is GET /v1/cluster as the lab reads it.
type ClusterStatus struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Leader       struct {
		ID     string `json:"id"`
		APIURL string `json:"api_url"`
		Stale  bool   `json:"stale"`
	} `json:"leader"`
	Members []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// Leader waits for a running node that reports itself leader and is seen as leader by
// every other running node.
func (c *Cluster) Leader(timeout time.Duration) (*Node, error) {
	var leader *Node
	err := WaitFor(timeout, "one leader", func() (bool, string) {
		leader = nil
		for _, nd := range c.Nodes {
			if nd.Exited() {
				continue
			}
			var st ClusterStatus
			if err := c.Get(nd, "/v1/cluster", &st); err != nil {
				return false, err.Error()
			}
			if st.State == "Leader" {
				leader = nd
			}
		}
		if leader == nil {
			return false, "no leader"
		}
		return true, ""
	})
	return leader, err
}

// Partition cuts nd off from the other nodes: nftables rules in the cluster's namespace
// drop every packet between nd's address and theirs (raft and forwarded requests both
// leave from the node's address). Clients still reach every node.
func (c *Cluster) Partition(nd *Node) error {
	var others []string
	for _, o := range c.Nodes {
		if o != nd {
			others = append(others, o.IP)
		}
	}
	set := "{ " + strings.Join(others, ", ") + " }"
	rules := fmt.Sprintf("table inet fl_partition {\n chain in {\n"+
		"  type filter hook input priority -10; policy accept;\n"+
		"  ip saddr %s ip daddr %s drop\n  ip saddr %s ip daddr %s drop\n }\n}\n",
		nd.IP, set, set, nd.IP)
	path := filepath.Join(c.lab.Dir, "partition.nft")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		return err
	}
	_, err := Nft(c.Netns, "-f", path)
	return err
}

// Heal removes the partition.
func (c *Cluster) Heal() error {
	_, err := Nft(c.Netns, "delete", "table", "inet", "fl_partition")
	return err
}

// Get fetches path from nd with the admin token and decodes the JSON answer into v.
func (c *Cluster) Get(nd *Node, path string, v any) error {
	status, body, _, err := c.Do(nd, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %d %s", path, nd.ID, status, body)
	}
	return json.Unmarshal(body, v)
}

// Do sends a request with the admin token to nd and returns the status, body and
// headers.
func (c *Cluster) Do(nd *Node, method, path string, body any) (int, []byte, http.Header,
	error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, nd.API+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// Ctl runs fencectl inside the cluster's namespace against nd.
func (c *Cluster) Ctl(nd *Node, tenant string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Netns,
		filepath.Join(c.lab.Bin, "fencectl")}, args...)...)
	cmd.Env = append(os.Environ(), "FENCELINE_SERVER="+nd.API, "FENCELINE_TOKEN="+c.Token,
		"FENCELINE_TENANT="+tenant)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("fencectl %s: %v: %s", strings.Join(args, " "), err,
			stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Poster returns a Poster that sends requests to nd and fails on any answer but 2xx.
func (c *Cluster) Poster(nd *Node) Poster {
	return func(method, path string, body, out any) error {
		status, b, _, err := c.Do(nd, method, path, body)
		if err != nil {
			return err
		}
		if status/100 != 2 {
			return fmt.Errorf("%s %s on %s: %d %s", method, path, nd.ID, status, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
}

// Running returns the nodes whose process is running.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, nd := range c.Nodes {
		if !nd.Exited() {
			out = append(out, nd)
		}
	}
	return out
}

// Follower returns the first node that is not leader.
func (c *Cluster) Follower(leader *Node) *Node {
	for _, nd := range c.Nodes {
		if nd != leader {
			return nd
		}
	}
	return nil
}

// MoveAPI makes nd serve its API on port (same address) from its next (re)start.
func (c *Cluster) MoveAPI(nd *Node, port int) {
	listen := fmt.Sprintf("%s:%d", nd.IP, port)
	for i := range nd.args[:len(nd.args)-1] {
		if nd.args[i] == "--http-listen" {
			nd.args[i+1] = listen
		}
	}
	nd.API = "http://" + listen
}

// SetBin makes nd run the aggregator in binary directory dir from its next (re)start, on
// the same data directory and flags (an upgrade or a downgrade).
func (c *Cluster) SetBin(nd *Node, dir string) {
	nd.args[3] = filepath.Join(dir, "fenceline-aggregator")
}

// AddNode starts one more node (next address, next id) with the aggregator of binary
// directory dir, joining through join's API with cluster.join when join is set; it does
// not wait for it. env is added to its environment.
func (c *Cluster) AddNode(dir string, join *Node, env ...string) (*Node, error) {
	i := len(c.Nodes)
	ip := fmt.Sprintf("127.0.0.%d", 11+i)
	nd := &Node{ID: fmt.Sprintf("node-%d", i+1), IP: ip, API: "http://" + ip + ":8443",
		RaftAddr: ip + ":7000", DataDir: filepath.Join(c.lab.Dir, fmt.Sprintf("node-%d", i+1))}
	nd.args = []string{"netns", "exec", c.Netns, filepath.Join(dir, "fenceline-aggregator"),
		"--config", filepath.Join(c.lab.Root, "configs", "aggregator.yaml"),
		"--data-dir", nd.DataDir, "--http-listen", ip + ":8443", "--raft-listen", nd.RaftAddr,
		"--node-id", nd.ID, "--broker-url", c.Broker}
	if join != nil {
		nd.args = append(nd.args, "--join", join.API)
	}
	nd.env = append([]string{"FENCELINE_HTTP_ADMIN_TOKEN=" + c.Token,
		"FENCELINE_RAFT_HEARTBEAT_TIMEOUT=300ms", "FENCELINE_RAFT_ELECTION_TIMEOUT=300ms",
		"FENCELINE_RAFT_LEADER_LEASE_TIMEOUT=150ms", "FENCELINE_CLUSTER_TICK_INTERVAL=200ms",
	}, append(c.env, env...)...)
	if err := c.start(nd); err != nil {
		return nil, err
	}
	c.Nodes = append(c.Nodes, nd)
	return nd, nil
}
