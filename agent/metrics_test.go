package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

// TestHealthzReportsUplink: /healthz says the uplink is down (503, with the broker and
// the error) while the broker is unreachable, ok (200) once it is connected, and down
// again when the broker goes away.
func TestHealthzReportsUplink(t *testing.T) {
	if err := lab.CheckHost("mosquitto"); err != nil {
		t.Skip(err)
	}
	brokerPort, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", brokerPort)
	a := newDeliveryAgent(t, &syncBuffer{}, func(c *Config) {
		c.Broker.URL = broker
		c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	})
	ctx, cancel := context.WithCancel(context.Background())
	upDone, httpDone := make(chan error, 1), make(chan error, 1)
	go func() { upDone <- a.up.Run(ctx) }()
	go func() { httpDone <- a.serveMetrics(ctx) }()
	defer func() { cancel(); <-upDone; <-httpDone }()

	get := func() (int, health) {
		var h health
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort))
		if err != nil {
			return 0, h
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&h)
		return resp.StatusCode, h
	}
	wait := func(what string, code int) health {
		t.Helper()
		var h health
		err := lab.WaitFor(15*time.Second, what, func() (bool, string) {
			var c int
			c, h = get()
			return c == code && h.Uplink.Error != "" == (code != http.StatusOK),
				fmt.Sprintf("%d %+v", c, h)
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	h := wait("/healthz to report the unreachable broker", http.StatusServiceUnavailable)
	if h.Status != "uplink down" || h.Uplink.Connected || h.Uplink.Broker != broker {
		t.Errorf("broker unreachable: %+v", h)
	}

	l := lab.New("", t.TempDir(), "")
	defer l.Close()
	_, mosq, err := l.MosquittoIn("", "127.0.0.1", brokerPort)
	if err != nil {
		t.Fatal(err)
	}
	h = wait("/healthz ok", http.StatusOK)
	if h.Status != "ok" || !h.Uplink.Connected {
		t.Errorf("connected: %+v", h)
	}
	if v := metricValue(t, a, "fenceline_agent_uplink_connected"); v != 1 {
		t.Errorf("fenceline_agent_uplink_connected = %v while connected", v)
	}

	mosq.Stop()
	h = wait("/healthz to report the lost broker", http.StatusServiceUnavailable)
	if h.Status != "uplink down" {
		t.Errorf("broker gone: %+v", h)
	}
}
