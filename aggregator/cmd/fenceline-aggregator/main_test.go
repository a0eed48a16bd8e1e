package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/config"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
)

// start runs serve with the example config on free loopback ports until the test stops
// it; it returns the API URL and a stop function that reports serve's error.
func start(t *testing.T, dataDir, raftAddr string) (string, func() error) {
	return startWith(t, dataDir, raftAddr, http.StatusOK)
}

// startWith is start with more flags, waiting until /healthz answers status.
func startWith(t *testing.T, dataDir, raftAddr string, status int, flags ...string) (string, func() error) {
	t.Helper()
	httpAddr := testenv.FreeAddr(t)
	cfg, err := config.Load(config.NewFlagSet("test"), append([]string{
		"--config", "../../../configs/aggregator.yaml", "--data-dir", dataDir,
		"--http-listen", httpAddr, "--raft-listen", raftAddr,
		"--embedded-broker-listen", testenv.FreeAddr(t),
	}, flags...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, testenv.Logger(t)) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	url := "http://" + httpAddr
	testenv.WaitFor(t, 30*time.Second, "healthz", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v", err)
		default:
		}
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == status
	})
	return url, stop
}

// TestHealthzWithoutBroker: an aggregator whose external broker does not answer serves
// its API but is not healthy, and says why.
func TestHealthzWithoutBroker(t *testing.T) {
	brokerWait = 200 * time.Millisecond
	t.Cleanup(func() { brokerWait = 10 * time.Second })
	// A loopback port nobody listens on.
	broker := "tcp://" + testenv.FreeAddr(t)
	url, stop := startWith(t, filepath.Join(t.TempDir(), "data"), testenv.FreeAddr(t),
		http.StatusServiceUnavailable, "--broker-url", broker)
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "not connected to the MQTT broker") ||
		!strings.Contains(string(body), broker) {
		t.Fatalf("healthz %d: %s", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	raftAddr := testenv.FreeAddr(t)
	url, stop := start(t, dir, raftAddr)

	tokPath := filepath.Join(dir, "admin.token")
	fi, err := os.Stat(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(tokPath)
	token := strings.TrimSpace(string(b))

	post := func(url string) int {
		req, _ := http.NewRequest("POST", url+"/v1/tenants/acme/enrollments",
			strings.NewReader(`{"device":"fw1"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(url); st != http.StatusCreated {
		t.Fatalf("enrollment: %d", st)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	// Restart on the same data: the same admin token still works.
	url, stop = start(t, dir, raftAddr)
	if st := post(url); st != http.StatusCreated {
		t.Fatalf("enrollment after restart: %d", st)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `fenceline_ingest_rejected_total{reason="bad_signature"} 0`) {
		t.Fatalf("metrics lack the ingest counters:\n%.2000s", body)
	}
	req, _ := http.NewRequest("GET", url+"/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Ingest struct {
			Connected bool `json:"connected"`
		} `json:"ingest"`
	}
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if !stats.Ingest.Connected {
		t.Fatal("ingest not connected to the embedded broker")
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestDataDirInUse: a second aggregator on a running one's data dir stops at once with
// a clear error, before it opens anything there.
func TestDataDirInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, stop := start(t, dir, testenv.FreeAddr(t))
	defer stop()
	cfg, err := config.Load(config.NewFlagSet("test"), []string{
		"--config", "../../../configs/aggregator.yaml", "--data-dir", dir,
		"--http-listen", testenv.FreeAddr(t), "--raft-listen", testenv.FreeAddr(t),
		"--embedded-broker-listen", testenv.FreeAddr(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, testenv.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "in use by another fenceline-aggregator") {
		t.Fatalf("second aggregator on the same data dir: %v", err)
	}
}

// TestGCPercent: the aggregator's own GC target applies unless GOGC chose one.
func TestGCPercent(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if p, ok := gcPercent(getenv); !ok || p != defaultGCPercent {
		t.Errorf("without GOGC: %d %v", p, ok)
	}
	env["GOGC"] = "50"
	if _, ok := gcPercent(getenv); ok {
		t.Error("GOGC=50 overridden")
	}
}
